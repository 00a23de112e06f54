"""llama.cpp (llama-cpp-python) counterpart of the engine's `decode_slope` example: how much a longer context slows
one decode step, with both positions measured in one process, round by round.

usage: python benches/llamacpp_decode_slope.py <model.gguf> <threads> [short] [long] [steps]   (50 1024 200)

Two contexts evaluate synthetic prompts of `short` and `long` tokens (the filler of the other benches); then each
round evaluates one token in each context at the prompt's end (the position is rewound every round, so the cache
does not grow), back to back. Prints one JSON line: the median step time at each position, the slowdown from the
medians, and the median of the rounds' own ratios.
"""
import json
import statistics
import sys
import time

from llama_cpp import Llama

if len(sys.argv) < 3:
    sys.exit(__doc__)
path, threads = sys.argv[1], int(sys.argv[2])
short, long, steps = (int(a) for a in (sys.argv[3:] + ["50", "1024", "200"][len(sys.argv) - 3 :])[:3])


def context(n):
    llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    filler = llm.tokenize(b"The quick brown fox jumps over the lazy dog while the llama watches. ", add_bos=False, special=True)
    llm.reset()
    llm.eval((filler * (n // len(filler) + 1))[:n])
    return llm, filler


contexts = [(context(short), short), (context(long), long)]
times = [[], []]
for round_ in range(steps + 2):
    for i, ((llm, filler), n) in enumerate(contexts):
        llm.n_tokens = n  # eval removes cached positions from here on, then decodes at position n
        started = time.perf_counter()
        llm.eval([filler[round_ % len(filler)]])
        if round_ >= 2:
            times[i].append((time.perf_counter() - started) * 1e3)
ratios = [b / a for a, b in zip(*times)]
short_ms, long_ms = statistics.median(times[0]), statistics.median(times[1])
print(json.dumps({
    "engine": "llama.cpp", "bench": "decode_slope", "kv_cache_type": "f16", "threads": threads, "short": short,
    "long": long, "steps": steps, "short_ms": round(short_ms, 2), "long_ms": round(long_ms, 2),
    "slowdown_pct": round(100 * (long_ms / short_ms - 1), 1),
    "paired_slowdown_pct": round(100 * (statistics.median(ratios) - 1), 1),
}))
