"""Streaming time-to-first-token and total latency of a 64-token chat completion through the HTTP API.

usage: .venv/bin/python benches/stream_latency.py <base_url> <model> [runs]
Uses the official OpenAI SDK (installed by scripts/setup-sdk.sh); prints one JSON line with medians.
"""
import json
import statistics
import sys
import time

import openai

base, model = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=300)
messages = [{"role": "user", "content": "Tell me a very long story about a dragon and a knight."}]
ttft, total, tokens = [], [], []
for _ in range(runs):
    start = time.perf_counter()
    first = None
    usage = None
    for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=64, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        usage = chunk.usage or usage
    end = time.perf_counter()
    ttft.append(first - start)
    total.append(end - start)
    tokens.append(usage.completion_tokens)
print(json.dumps({"runs": runs, "completion_tokens": tokens, "ttft_ms_median": round(1000 * statistics.median(ttft), 1),
                  "total_ms_median": round(1000 * statistics.median(total), 1),
                  "decode_tok_s": round((statistics.median(tokens) - 1) / (statistics.median(total) - statistics.median(ttft)), 1)}))
