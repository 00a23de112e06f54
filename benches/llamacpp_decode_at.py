"""llama.cpp (llama-cpp-python) decode speed at a given position, measured like the engine's `decode_at` example.

usage: python benches/llamacpp_decode_at.py <model.gguf> <threads> <position> <tokens>

Evaluates a synthetic prompt of exactly `position` tokens (the filler of llamacpp_throughput.py and the engine's
examples), takes the greedy (argmax) token from its logits, then times `tokens` single-token evals, each followed
by an argmax over the logits: decode steps at positions `position .. position + tokens`, as in ours (where the
first token comes out of the prefill and `timings.decode` covers the rest). The end of turn is ignored, so
exactly `tokens` steps always run. Prints one JSON line; peak_rss_mb includes the Python interpreter (≈ 40 MB).
"""
import json
import resource
import sys
import time

import numpy as np
from llama_cpp import Llama

if len(sys.argv) != 5:
    sys.exit(__doc__)
path, threads, position, decode_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if position < 1:
    sys.exit("position must be at least 1")

llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
if position + decode_len > llm.n_ctx():
    sys.exit(f"position + tokens ({position + decode_len}) exceeds n_ctx ({llm.n_ctx()})")
filler = llm.tokenize(b"The quick brown fox jumps over the lazy dog while the llama watches. ", add_bos=False, special=True)
prompt = (filler * (position // len(filler) + 1))[:position]

import llama_cpp


def last_argmax() -> int:
    # llama-cpp-python 0.3.36 keeps `scores` only with logits_all; read the last row from the context.
    row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),))
    return int(np.argmax(row))


llm.reset()
t = time.perf_counter()
llm.eval(prompt)  # keeps only the last position's logits (logits_all=False)
tok = last_argmax()
prefill_s = time.perf_counter() - t

t = time.perf_counter()
for _ in range(decode_len):
    llm.eval([tok])
    tok = last_argmax()
decode_s = time.perf_counter() - t

rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"engine": "llama.cpp", "bench": "decode_at", "threads": threads, "position": position,
                  "prefill_s": round(prefill_s, 2), "decode_tokens": decode_len,
                  "decode_tok_s": round(decode_len / decode_s, 1) if decode_s > 0 else 0.0,
                  "ms_per_token": round(1000 * decode_s / decode_len, 1) if decode_len else 0.0,
                  "peak_rss_mb": round(rss)}))
