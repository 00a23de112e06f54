#!/usr/bin/env bash
# What the gate costs on its own: authenticated `GET /v1/models` (token validation, model permissions,
# the audit records) measured with wrk against the release binary under `serve --dev` with audit on —
# one connection (latency: p50/p99) and 32 connections (throughput), each for $DURATION — and, in the
# same run, the same two measurements of the bare HTTP stack (crates/server/examples/http_floor.rs: axum,
# hyper, Tokio, the binary's allocator and a constant body; no token, permission or audit): the machine's floor, so the
# gate's own cost is the difference.
#
# With PIN=1 the one-connection runs keep wrk on CPU 0 and the server (every thread) on CPU 1, so neither
# waits for the other's core: on a 2-core VM most of the one-connection tail is the two sharing cores. The
# 32-connection runs always use every core for both.
#
# usage: benches/run-gate-wrk.sh        env: DURATION (default 20s), THREADS (wrk threads, default 2), PIN (0/1)
# Needs wrk (installed from Debian's packages if missing). Prints wrk's own reports.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
duration="${DURATION:-20s}"
threads="${THREADS:-2}"
pin="${PIN:-0}"
# one_connection PID URL [wrk args...]: wrk with one connection, pinned apart from the server with PIN=1.
one_connection() {
  local pid="$1"; shift
  if [ "$pin" = 1 ]; then
    taskset -a -p -c 1 "$pid" >/dev/null
    taskset -c 0 wrk -t1 -c1 -d"$duration" --latency "$@"
    taskset -a -p -c "0-$(($(nproc) - 1))" "$pid" >/dev/null
  else
    wrk -t1 -c1 -d"$duration" --latency "$@"
  fi
}
command -v wrk >/dev/null 2>&1 || {
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y --no-install-recommends wrk >/dev/null
}
./models/fetch.sh >/dev/null
cargo build --quiet --release --locked -p llamagate-server --bin llamagate --example http_floor
bin="$root/target/release/llamagate"
work="$(mktemp -d)"
server=""
floor=""
trap '[ -z "$server" ] || kill "$server" 2>/dev/null || true; [ -z "$floor" ] || kill "$floor" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/stack.yaml" <<YAML
server:
  host: 127.0.0.1
  port: 0
models:
  - id: smollm2-135m-instruct
    source: $root/models/cache/SmolLM2-135M-Instruct.Q4_1.gguf
    context_length: 1024
oauth_config:
  enable_auth: false
  enable_audit_logging: true
YAML
(cd "$work" && exec "$bin" --threads 1 serve --config stack.yaml --dev >"$work/out" 2>"$work/err") &
server=$!
for _ in $(seq 300); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.2; done
base="$(sed -n 's/^llamagate listening on //p' "$work/out" | head -1)"
[ -n "$base" ] || { cat "$work/err" >&2; echo "the server did not start" >&2; exit 1; }
token="$(cd "$work" && "$bin" token --config stack.yaml --issuer "$base" --sub wrk-user)"
curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$base/v1/models"
echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%Y-%m-%d); binary $(git rev-parse --short HEAD)"
echo "== 1 connection, $duration (pinned apart: $pin)"
one_connection "$server" -H "Authorization: Bearer $token" "$base/v1/models"
echo "== 32 connections, $threads wrk threads, $duration"
wrk -t"$threads" -c32 -d"$duration" --latency -H "Authorization: Bearer $token" "$base/v1/models"
echo "== audit records written (all files, rotation included): $(cat "$work"/.llamagate/audit.log* | wc -l)"

"$root/target/release/examples/http_floor" >"$work/floor.out" &
floor=$!
for _ in $(seq 100); do grep -q "listening on" "$work/floor.out" 2>/dev/null && break; sleep 0.1; done
floor_base="$(sed -n 's/^listening on //p' "$work/floor.out" | head -1)"
echo "== floor (bare HTTP stack, examples/http_floor.rs): 1 connection, $duration (pinned apart: $pin)"
one_connection "$floor" "$floor_base/v1/models"
echo "== floor: 32 connections, $threads wrk threads, $duration"
wrk -t"$threads" -c32 -d"$duration" --latency "$floor_base/v1/models"
