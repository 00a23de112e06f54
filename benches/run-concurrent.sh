#!/usr/bin/env bash
# Eight concurrent streams through the HTTP API, llamagate vs llama.cpp's servers, one after the other in one
# run, the same engine threads for all, on the bundled SmolLM2-135M Q4_1 GGUF: llama.cpp's own C++
# `llama-server` with 8 parallel slots (continuous batching), when there is one (LLAMA_SERVER), and
# llama-cpp-python 0.3.36's Python server.
# Scenario: benches/scenarios/concurrent-8.yaml (8 clients in a closed loop, streamed greedy chat completions
# of 32..64 tokens), driven by llamagate-load (crates/loadgen) for DURATION.
#
# usage: benches/run-concurrent.sh
#   env: THREADS (engine threads for both servers, default 2), DURATION (default 60s), OUT (directory for the
#        reports and server logs, default a new directory under /tmp; it is kept and printed),
#        LLAMACPP_PYTHON, LLAMA_SERVER (llama.cpp's `llama-server` binary; skipped when absent): by default
#        what benches/setup-llamacpp.sh builds in .bench/ from the llama.cpp sources vendored in
#        llama-cpp-python's sdist (set up on first use; see benches/lib/preamble.sh).
#
# 1. llamagate: target/debug/llamagate (dev profile: the engine and numeric crates are opt-level 3) with
#    `--threads $THREADS serve --config config/default.yaml --dev` on a free loopback port, with its own dev
#    signing key in $OUT; a premium token (`llamagate token`, scopes model_smollm2_135m + premium_access, as
#    scripts/run.sh mints) is passed to the load tool. The scheduler batches the 8 sequences.
# 2. llama.cpp: `python -m llama_cpp.server --model_alias smollm2-135m-instruct --n_threads $THREADS
#    --n_threads_batch $THREADS --n_ctx 2048 --interrupt_requests false` on another free port, no token (as in
#    benches/RESULTS.md, "llama.cpp side by side").
#    llama-cpp-python 0.3.36's server CANNOT run parallel slots: it has no n_parallel/slots setting (settings.py),
#    it builds one Llama (one context, n_seq_max 1 except for embeddings) per model, and app.py holds a global
#    lock (llama_outer_lock/llama_inner_lock) around every completion, so the 8 streams are served ONE AT A TIME;
#    the other 7 wait in the queue (it shows up as TTFT). Its default `interrupt_requests: true` would even cut
#    the running stream short ([DONE] after one chunk) whenever another request is waiting, which under 8
#    clients truncates nearly every answer, so this script turns it off. n_ctx 2048 is ample: one sequence at a
#    time, ≈ 45 prompt + 64 output tokens. (llama.cpp's own C++ `llama-server -np 8 -cb` would batch; it is not
#    what the Python package serves; the next step runs it.)
# 3. llama.cpp's C++ server: `llama-server -m $model --alias smollm2-135m-instruct -t $THREADS -tb $THREADS
#    -np 8 -c 4096 --cont-batching` (8 slots of 512 positions each, decoded together in one batch), no token.
#
# Output: each run's full report goes to $OUT/<server>.json (llamagate, llamacpp, llama-server) (and the load tool's text report to stdout), then a
# table: requests ok / sent, aggregate output tok/s (all streams together, over the run's wall time), TTFT p50
# and p99, inter-token p50, end-to-end latency p50. Higher tok/s and lower TTFT are better. Short DURATIONs
# mostly measure start-up: the run includes waiting for the requests in flight when sending stops.
set -euo pipefail
cd "$(dirname "$0")/.."

threads="${THREADS:-2}"
duration="${DURATION:-60s}"
. benches/lib/preamble.sh
need_model
scenario=benches/scenarios/concurrent-8.yaml
out="${OUT:-$(mktemp -d /tmp/run-concurrent.XXXXXX)}"
mkdir -p "$out"

server_pid=""
load_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
cleanup() {
  if [ -n "$load_pid" ]; then kill "$load_pid" 2>/dev/null || true; fi
  stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# load ARGS...: the load tool, in the background so that Ctrl-C/TERM reach the cleanup at once.
load() {
  target/release/llamagate-load --scenario "$scenario" --duration "$duration" --quiet "$@" &
  load_pid=$!
  wait "$load_pid"
  load_pid=""
}

need_llamacpp
echo "building llamagate (dev) and llamagate-load (release)..." >&2
cargo build --quiet -p llamagate-server
cargo build --quiet --release -p llamagate-loadgen

# 1. llamagate
port=$(free_port)
base="http://127.0.0.1:$port"
key="$out/dev-issuer.json"
echo "== llamagate on $base, $threads threads, $duration" >&2
target/debug/llamagate --threads "$threads" serve --config config/default.yaml --dev --dev-key-file "$key" \
  --port "$port" >"$out/llamagate.log" 2>&1 &
server_pid=$!
wait_for "$base/v1/health" llamagate "$server_pid"
token=$(target/debug/llamagate token --config config/default.yaml --issuer "$base" --key-file "$key" \
  --scope model_smollm2_135m --scope premium_access --sub load-concurrent)
# The token goes through the environment (LLAMAGATE_LOAD_TOKEN), not the command line.
export LLAMAGATE_LOAD_TOKEN="$token"
load --url "$base" --name concurrent-8-llamagate --json "$out/llamagate.json"
unset LLAMAGATE_LOAD_TOKEN
stop_server

# 2. llama.cpp (llama-cpp-python's server, requests serialized: see the top)
port=$(free_port)
base="http://127.0.0.1:$port"
echo "== llama.cpp (llama-cpp-python server) on $base, $threads threads, $duration" >&2
"$py" -m llama_cpp.server --model "$model" --model_alias smollm2-135m-instruct --n_threads "$threads" \
  --n_threads_batch "$threads" --n_ctx 2048 --interrupt_requests false --host 127.0.0.1 --port "$port" \
  >"$out/llamacpp.log" 2>&1 &
server_pid=$!
wait_for "$base/v1/models" llamacpp "$server_pid"
load --url "$base" --name concurrent-8-llamacpp --json "$out/llamacpp.json"
stop_server

# 3. llama.cpp's C++ server with 8 parallel slots, when there is one
reports=("$out/llamagate.json" "$out/llamacpp.json")
if [ -x "$llama_server" ]; then
  port=$(free_port)
  base="http://127.0.0.1:$port"
  echo "== llama.cpp (llama-server, 8 slots) on $base, $threads threads, $duration" >&2
  "$llama_server" -m "$model" --alias smollm2-135m-instruct -t "$threads" -tb "$threads" -np 8 -c 4096 \
    --cont-batching --host 127.0.0.1 --port "$port" >"$out/llama-server.log" 2>&1 &
  server_pid=$!
  wait_for "$base/v1/models" llama-server "$server_pid"
  load --url "$base" --name concurrent-8-llama-server --json "$out/llama-server.json"
  stop_server
  reports+=("$out/llama-server.json")
else
  echo "no llama-server at $llama_server (set LLAMA_SERVER): skipping the 8-slot C++ server" >&2
fi

echo
echo "concurrent-8, $threads threads, $duration (reports and server logs in $out):"
python3 - "${reports[@]}" <<'PY'
import json, sys
def num(v, fmt, unit=""):
    return "-" if v is None else format(v, fmt) + unit
print(f"{'server':<12} {'ok/sent':>9} {'out tok/s':>10} {'TTFT p50':>10} {'TTFT p99':>10} {'ITL p50':>9} {'lat p50':>10} {'wall s':>7}")
for name, path in zip(("llamagate", "llama.cpp py", "llama-server"), sys.argv[1:]):
    r = json.load(open(path))
    o = r["overall"]
    print(f"{name:<12} {str(o['ok']) + '/' + str(o['requests']):>9} {num(o['output_tokens_per_s'], '.2f'):>10} "
          f"{num(o['ttft_ms'].get('p50'), '.0f', 'ms'):>10} {num(o['ttft_ms'].get('p99'), '.0f', 'ms'):>10} "
          f"{num(o['inter_token_ms'].get('p50'), '.1f', 'ms'):>9} {num(o['latency_ms'].get('p50'), '.0f', 'ms'):>10} "
          f"{r['wall_s']:>7.1f}")
PY
