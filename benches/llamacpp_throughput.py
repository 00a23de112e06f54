"""llama.cpp (llama-cpp-python) on the same GGUF, measured the same way as the engine's `throughput` example.

usage: python benches/llamacpp_throughput.py <model.gguf> <threads> [prefill tokens] [decode tokens]
Prints one JSON line.
"""
import json
import resource
import sys
import time

from llama_cpp import Llama

path, threads = sys.argv[1], int(sys.argv[2])
prefill_len = int(sys.argv[3]) if len(sys.argv) > 3 else 512
decode_len = int(sys.argv[4]) if len(sys.argv) > 4 else 128

llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
filler = llm.tokenize(b"The quick brown fox jumps over the lazy dog while the llama watches. ", add_bos=False, special=True)
prompt = (filler * (prefill_len // len(filler) + 1))[:prefill_len]
llm.reset()
t = time.perf_counter()
llm.create_completion(prompt, max_tokens=1, temperature=0.0)  # prefill plus one sampled token, as in ours
prefill_tps = prefill_len / (time.perf_counter() - t)

chat = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nTell me a very long story about a dragon and a knight.<|im_end|>\n<|im_start|>assistant\n"
ids = llm.tokenize(chat.encode(), add_bos=False, special=True)
llm.reset()
decoded = -1
t = None
for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
    if decoded == -1:
        t = time.perf_counter()  # the first token marks the end of prefill, as in the engine's timings
    decoded += 1
    if tok == llm.token_eos() or decoded >= decode_len - 1:
        break
decode_tps = decoded / (time.perf_counter() - t)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"engine": "llama.cpp", "threads": threads, "prefill_tokens": prefill_len,
                  "prefill_tok_s": round(prefill_tps, 1), "decode_tokens": decoded,
                  "decode_tok_s": round(decode_tps, 1), "peak_rss_mb": round(rss)}))
