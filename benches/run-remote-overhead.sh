#!/usr/bin/env bash
# What llamagate adds in front of a remote OpenAI-compatible server (issue 22's benchmark): llama.cpp's C++
# `llama-server` on the bundled SmolLM2-135M Q4_1 GGUF, loaded by llamagate-load with 64 concurrent streams
# (benches/scenarios/remote-64.yaml) twice in one run, against the same llama-server process:
#
# 1. llama-server directly;
# 2. `llamagate serve --dev` in front of it, as a `remote::llama-cpp-server` provider (health probes on, rate
#    limiting off so the gate's work is authentication, scope check, the reservation bookkeeping, the relay
#    and the audit), with a development token.
#
# The first pass warms llama-server (its slots, the prompt cache); then each pass runs for DURATION. Output:
# a table of requests ok/sent, aggregate output tok/s, TTFT p50/p99, inter-token p50/p99 and end-to-end p50
# for both, and the differences (gate − direct): the added TTFT is the per-request overhead, the added
# inter-token time the per-token overhead, and the tok/s ratio the throughput loss. On a machine with fewer
# cores than 64 streams need, both sides are CPU-bound and the gate competes with llama-server for the cores:
# give llama-server its own cores (THREADS) and read the differences with that in mind.
#
# usage: benches/run-remote-overhead.sh
#   env: DURATION (default 60s), THREADS (llama-server threads, default 4), SLOTS (llama-server's parallel
#        slots, default 64), CONCURRENCY (streams, default the scenario's 64), OUT (directory for reports and
#        logs, default a new one under /tmp, kept and printed), LLAMA_SERVER (the binary; default what
#        benches/setup-llamacpp.sh builds, else the minimal one models/tools/build.sh builds for the tests),
#        GATE (the llamagate binary, default target/release/llamagate, built if absent; target/debug/llamagate
#        works for a quick check but its HTTP stack is unoptimised), LOADGEN (default
#        target/release/llamagate-load, built if absent).
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${DURATION:-60s}"
threads="${THREADS:-4}"
slots="${SLOTS:-64}"
. benches/lib/preamble.sh
need_model
scenario=benches/scenarios/remote-64.yaml
out="${OUT:-$(mktemp -d /tmp/run-remote-overhead.XXXXXX)}"
mkdir -p "$out"
if [ ! -x "$llama_server" ] && [ -z "${LLAMA_SERVER:-}" ]; then
  llama_server=.bench/llamacpp-min/bin/llama-server
fi
[ -x "$llama_server" ] || { echo "no llama-server at $llama_server: run models/tools/build.sh or set LLAMA_SERVER" >&2; exit 1; }
gate="${GATE:-target/release/llamagate}"
loadgen="${LOADGEN:-target/release/llamagate-load}"
if [ ! -x "$gate" ]; then cargo build --quiet --release -p llamagate-server; fi
if [ ! -x "$loadgen" ]; then cargo build --quiet --release -p llamagate-loadgen; fi

pids=()
load_pid=""
cleanup() {
  if [ -n "$load_pid" ]; then kill "$load_pid" 2>/dev/null || true; fi
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# load NAME URL [ARGS...]: one pass of the scenario, in the background so Ctrl-C reaches the cleanup.
load() {
  local name=$1 url=$2
  shift 2
  local extra=()
  if [ -n "${CONCURRENCY:-}" ]; then extra+=(--concurrency "$CONCURRENCY"); fi
  "$loadgen" --scenario "$scenario" --duration "$duration" --quiet --url "$url" --name "remote-64-$name" \
    --json "$out/$name.json" "${extra[@]}" "$@" &
  load_pid=$!
  wait "$load_pid"
  load_pid=""
}

# llama-server: SLOTS parallel slots of 512 positions each, continuous batching.
upstream_port=$(free_port)
upstream="http://127.0.0.1:$upstream_port"
echo "== llama-server on $upstream: $threads threads, $slots slots" >&2
"$llama_server" -m "$model" --alias smollm2-135m-instruct -t "$threads" -tb "$threads" -np "$slots" \
  -c $((slots * 512)) --cont-batching --no-webui --host 127.0.0.1 --port "$upstream_port" \
  >"$out/llama-server.log" 2>&1 &
pids+=($!)
wait_for "$upstream/health" llama-server "${pids[-1]}"

# llamagate in front of it.
gate_port=$(free_port)
gate_base="http://127.0.0.1:$gate_port"
cat >"$out/stack.yaml" <<YAML
server:
  host: 127.0.0.1
  port: $gate_port
  max_connections_per_ip: 1024
providers:
  inference:
    - provider_id: llamacpp
      provider_type: remote::llama-cpp-server
      config:
        base_url: $upstream/v1
        max_retries: 2
registered_resources:
  models:
    - model_id: smollm2-135m-instruct
      provider_id: llamacpp
      provider_model_id: smollm2-135m-instruct
      required_scope: model_smollm2_135m
      tokenizer: $PWD/$model
oauth_config:
  enable_rate_limiting: false
YAML
echo "== llamagate ($gate) on $gate_base in front of it" >&2
(cd "$out" && exec "$OLDPWD/$gate" --threads 1 serve --config stack.yaml --dev --port "$gate_port") \
  >"$out/llamagate.log" 2>&1 &
pids+=($!)
wait_for "$gate_base/v1/health" llamagate "${pids[-1]}"
token=$(cd "$out" && "$OLDPWD/$gate" token --config stack.yaml --issuer "$gate_base" \
  --scope model_smollm2_135m --scope premium_access --sub remote-overhead)

echo "== warm-up pass (llama-server directly, not reported)" >&2
duration=5s load warmup "$upstream"
echo "== llama-server directly, $duration" >&2
load direct "$upstream"
echo "== through llamagate, $duration" >&2
# The token goes through the environment (LLAMAGATE_LOAD_TOKEN), not the command line.
LLAMAGATE_LOAD_TOKEN="$token" load gate "$gate_base"

echo
echo "remote-64: llama-server alone vs llamagate in front of it, $duration each (reports and logs in $out):"
python3 - "$out/direct.json" "$out/gate.json" <<'PY'
import json, sys
def get(report, key, q):
    return report["overall"][key].get(q)
def num(v, fmt, unit=""):
    return "-" if v is None else format(v, fmt) + unit
rows = []
print(f"{'target':<10} {'ok/sent':>9} {'out tok/s':>10} {'TTFT p50':>10} {'TTFT p99':>10} {'ITL p50':>9} {'ITL p99':>9} {'lat p50':>9}")
for name, path in zip(("direct", "llamagate"), sys.argv[1:]):
    r = json.load(open(path))
    o = r["overall"]
    rows.append(r)
    print(f"{name:<10} {str(o['ok']) + '/' + str(o['requests']):>9} {num(o['output_tokens_per_s'], '.1f'):>10} "
          f"{num(get(r, 'ttft_ms', 'p50'), '.1f', 'ms'):>10} {num(get(r, 'ttft_ms', 'p99'), '.1f', 'ms'):>10} "
          f"{num(get(r, 'inter_token_ms', 'p50'), '.2f', 'ms'):>9} {num(get(r, 'inter_token_ms', 'p99'), '.2f', 'ms'):>9} "
          f"{num(get(r, 'latency_ms', 'p50'), '.0f', 'ms'):>9}")
def diff(key, q):
    a, b = get(rows[0], key, q), get(rows[1], key, q)
    return None if a is None or b is None else b - a
direct_tps, gate_tps = rows[0]["overall"]["output_tokens_per_s"], rows[1]["overall"]["output_tokens_per_s"]
ratio = None if not direct_tps or gate_tps is None else gate_tps / direct_tps
print(f"added by the gate: TTFT p50 {num(diff('ttft_ms', 'p50'), '+.2f', ' ms')}, TTFT p99 {num(diff('ttft_ms', 'p99'), '+.2f', ' ms')}, "
      f"inter-token p50 {num(diff('inter_token_ms', 'p50'), '+.3f', ' ms')}, p99 {num(diff('inter_token_ms', 'p99'), '+.3f', ' ms')}; "
      f"throughput {num(ratio, '.3f')}x of direct")
PY
