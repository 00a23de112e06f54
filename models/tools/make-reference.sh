#!/usr/bin/env bash
# Writes crates/engine/tests/fixtures/smollm2-<variant>-llamacpp.json: llama.cpp's greedy tokens and
# logits on each model variant (models/make-variants.sh), for the prompts of the default model's fixture
# (smollm2-llamacpp.json: same tokenizer, same token ids). Run by hand when the pinned llama.cpp or the
# variants change; the tests read the committed files.
#
# usage: models/tools/make-reference.sh [VARIANT ...]   (default: every variant, e.g. Q4_0 F16)
set -euo pipefail
cd "$(dirname "$0")/../.."
./models/make-variants.sh >/dev/null
models/tools/build.sh
fixtures=crates/engine/tests/fixtures
tool=.bench/llamacpp-min/bin/reference-logits

python3 - "$fixtures/smollm2-llamacpp.json" >/tmp/llamagate-reference-prompts.txt <<'PY'
import json, sys
for case in json.load(open(sys.argv[1]))["cases"]:
    print(" ".join(str(t) for t in case["prompt_ids"]))
PY

# Variants to run: the arguments, or all of them.
if [ $# -gt 0 ]; then variants=("$@"); else variants=(Q4_0 Q4_K_M Q5_K_M Q6_K Q8_0 F16 BF16 F16-Q8_0); fi
for variant in "${variants[@]}"; do
  file="SmolLM2-135M-Instruct.$variant.gguf"
  echo "llama.cpp on $file ..." >&2
  "$tool" "models/cache/$file" </tmp/llamagate-reference-prompts.txt >/tmp/llamagate-reference.jsonl
  python3 - "$fixtures/smollm2-llamacpp.json" "models/cache/$file" "$(cat benches/llamacpp.version)" \
    /tmp/llamagate-reference.jsonl >"$fixtures/smollm2-${variant,,}-llamacpp.json" <<'PY'
import hashlib, json, os, sys
base, model, version, results = sys.argv[1:5]
cases = json.load(open(base))["cases"]
out = {
    "model_file": os.path.basename(model),
    "sha256": hashlib.sha256(open(model, "rb").read()).hexdigest(),
    "engine": f"llama.cpp from llama-cpp-python {version} (models/tools/reference_logits.cpp): 1 thread, "
              "f16 KV cache, flash attention off, weight repacking on",
    "cases": [],
}
for case, line in zip(cases, open(results)):
    r = json.loads(line)
    assert r["prompt_ids"] == case["prompt_ids"]
    out["cases"].append({
        "messages": case["messages"],
        "prompt_text": case["prompt_text"],
        "prompt_ids": r["prompt_ids"],
        "greedy_ids": r["greedy_ids"],
        "steps": r["steps"],
        "last_prompt_logits_head": r["last_prompt_logits_head"],
    })
json.dump(out, sys.stdout, indent=1)
print()
PY
done
rm -f /tmp/llamagate-reference-prompts.txt /tmp/llamagate-reference.jsonl
