"""How far llama.cpp's own KV-cache options move the default model's logits from its f16 reference.

usage: .bench/llamacpp-python/bin/python benches/llamacpp_kv_deviation.py [model.gguf]   (benches/setup-llamacpp.sh installs it)

Teacher-forces each case of crates/engine/tests/fixtures/smollm2-llamacpp.json (the reference
crates/engine/tests/it/smollm2_llamacpp.rs checks us against) through llama-cpp-python with the default f16 cache, f16 with
flash attention, and q8_0 keys and values (flash attention, which llama.cpp needs for a quantized V),
and prints, per setting, the largest and the mean deviation of the reference's top-5 logits and the steps with a
clear top-1 (margin >= 0.2) where llama.cpp's own top-1 changed. This is the yardstick for our q8_0
cache's bound in that test.
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "..", "crates", "engine", "tests", "fixtures", "smollm2-llamacpp.json")
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "models", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf")
GGML_TYPE_Q8_0 = 8


def deviation(reference, **options):
    llm = Llama(model_path=MODEL, n_ctx=2048, n_threads=1, logits_all=True, verbose=False, **options)
    worst, total, count, flips, clear = 0.0, 0.0, 0, 0, 0
    for case in reference["cases"]:
        tokens = case["prompt_ids"] + case["greedy_ids"]
        llm.reset()
        llm.eval(tokens)
        scores = np.array(llm.scores[: len(tokens)])
        for step, expected in enumerate(case["steps"]):
            row = scores[len(case["prompt_ids"]) - 1 + step]
            deviations = [abs(row[t] - v) for t, v in zip(expected["top5_ids"], expected["top5_logits"])]
            worst = max(worst, max(deviations))
            total, count = total + sum(deviations), count + len(deviations)
            if expected["margin"] >= 0.2:
                clear += 1
                flips += int(np.argmax(row)) != expected["top5_ids"][0]
    return {
        "largest_top5_deviation": round(float(worst), 3),
        "mean_top5_deviation": round(float(total / count), 4),
        "clear_top1_changed": flips,
        "clear_steps": clear,
    }


reference = json.load(open(REFERENCE))
for name, options in [
    ("f16", {}),
    ("f16+flash_attn", {"flash_attn": True}),
    ("q8_0+flash_attn", {"flash_attn": True, "type_k": GGML_TYPE_Q8_0, "type_v": GGML_TYPE_Q8_0}),
]:
    print(json.dumps({"engine": "llama.cpp", "kv_cache": name, **deviation(reference, **options)}))
