#!/usr/bin/env bash
# The soak (issue 19): benches/scenarios/soak.yaml against the release server for $DURATION, then the
# checks of benches/soak_check.py — no 5xx but the documented 503 back-pressure, resident memory flat
# after warm-up, every `inference_request` audit record closed, every subject's budget charged exactly
# the tokens its audit records say were processed — and a summary to paste into benches/RESULTS.md.
#
# usage: benches/run-soak.sh
# env:   DURATION (default 20m), WARMUP_S (seconds of RSS not held to the bound, default 120),
#        RSS_EVERY_S (sampling period, default 5), RSS_BOUND_MB (default 10),
#        OUT (output directory, default bench-out/soak-<UTC time>), SKIP_BUILD=1 (use the built binaries)
#
# The server runs `serve --dev` (its own token issuer) with audit logging, the tier claim and budgets per
# day, so that a budget can be read back exactly: a bucket that refills by one token every 0.2 s or more
# over a window of a day keeps its spending readable from `/v1/usage` (see soak_check.py). One engine
# thread (`--threads 1`, RAYON_NUM_THREADS=1) and a queue of 16 waiting requests: beyond them, 503.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
duration="${DURATION:-20m}"
out="${OUT:-$root/bench-out/soak-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

./models/fetch.sh >/dev/null
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --quiet --release --locked -p llamagate-server -p llamagate-loadgen
fi
export LLAMAGATE="$root/target/release/llamagate"
load="$root/target/release/llamagate-load"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"

cat >"$out/stack.yaml" <<YAML
server:
  host: 127.0.0.1
  port: $port
  max_body_bytes: 1048576
models:
  - id: smollm2-135m-instruct
    source: $root/models/cache/SmolLM2-135M-Instruct.Q4_1.gguf
    context_length: 1024
    max_batch: 8
    queue_capacity: 16
oauth_config:
  enable_auth: false            # serve --dev turns this into its own issuer's settings
  enable_audit_logging: true
  audit:
    path: $out/audit.log
    rotate_max_bytes: 1073741824  # one file for the whole run
  enable_rate_limiting: true
  rate_limits:
    tier_claim: tier
    tiers:                      # per day; tokens refill one every 86400 / tokens seconds
      free: {requests: 1000, tokens: 2000, window_seconds: 86400, priority: 0}
      basic: {requests: 5000, tokens: 43200, window_seconds: 86400, priority: 1}
      premium: {requests: 50000, tokens: 259200, window_seconds: 86400, priority: 2}
      enterprise: {requests: 100000, tokens: 432000, window_seconds: 86400, priority: 3}
YAML
export LLAMAGATE_CONFIG="$out/stack.yaml" LLAMAGATE_DEV_KEY_FILE="$out/dev-issuer.json"

(cd "$out" && RAYON_NUM_THREADS=1 exec "$LLAMAGATE" --threads 1 serve --config stack.yaml --dev \
  >"$out/server.out" 2>"$out/server.err") &
server=$!
sampler=""
cleanup() {
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 300); do grep -q "listening on" "$out/server.out" 2>/dev/null && break; sleep 0.2; done
grep -q "listening on" "$out/server.out" || { cat "$out/server.err" >&2; echo "the server did not start" >&2; exit 1; }

# Resident memory every few seconds: `unix-time kib` per line.
(while kill -0 "$server" 2>/dev/null; do
   rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || true)"
   [ -n "$rss" ] && echo "$(date +%s.%N) $rss" >>"$out/rss.tsv"
   sleep "${RSS_EVERY_S:-5}"
 done) &
sampler=$!

{
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB"
  echo "binary: $(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes')"
  echo "start: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out/run.txt"
(cd "$out" && "$load" --scenario "$root/benches/scenarios/soak.yaml" --url "$base" --duration "$duration" \
  --json "$out/report.json" --chart "$out/report.svg" --quiet >"$out/report.txt")
echo "end: $(date -u +%Y-%m-%dT%H:%M:%SZ), load average $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out/run.txt"

# Budgets and counters from the live server, once it has settled every request (the probe waits for it).
python3 "$root/benches/soak_check.py" probe --out "$out" --url "$base"
kill "$sampler" 2>/dev/null || true
sampler=""
kill -TERM "$server"
wait "$server" || true
"$LLAMAGATE" audit verify "$out/audit.log" >"$out/audit-verify.txt" 2>&1 || true
python3 "$root/benches/soak_check.py" check --out "$out" --warmup-s "${WARMUP_S:-120}" \
  --rss-bound-mb "${RSS_BOUND_MB:-10}"
