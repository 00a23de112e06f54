#!/usr/bin/env bash
# Runs the server on the bundled default model (fetching the model on first use), on port 8321.
# usage: scripts/run.sh [more `llamagate serve` flags, e.g. --port 9000]
set -euo pipefail
cd "$(dirname "$0")/.."
./models/fetch.sh
cargo build --quiet --locked -p llamagate-server
port=8321
for ((i = 1; i <= $#; i++)); do
  if [ "${!i}" = "--port" ]; then j=$((i + 1)); port="${!j}"; fi
done
cat <<TXT

llamagate is starting on http://127.0.0.1:$port (Ctrl-C stops it). Try:

  curl -s http://127.0.0.1:$port/v1/models
  curl -s http://127.0.0.1:$port/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Why is the sky blue?"}],"max_tokens":64}'

  python3 -c 'from llama_stack_client import LlamaStackClient as C; c = C(base_url="http://127.0.0.1:$port");
print(c.chat.completions.create(model="smollm2-135m-instruct", messages=[{"role":"user","content":"Hi!"}]).choices[0].message.content)'

TXT
exec target/debug/llamagate serve --config config/default.yaml "$@"
