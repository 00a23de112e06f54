#!/usr/bin/env bash
# Runs the server on the bundled default model (fetching the model on first use), on port 8321, in
# development mode (`serve --dev`): the server is its own token issuer, signing with a persistent key in
# .llamagate/dev-issuer.json (git-ignored), and the token printed below is accepted by it.
# It also makes the Python venv the printed SDK example runs with (.venv, scripts/setup-sdk.sh --python), so
# every printed command works as written when pasted into another shell, from any directory
# (tests/quickstart runs them).
# usage: scripts/run.sh [more `llamagate serve` flags, e.g. --port 9000]
#   env: LLAMAGATE_BIN (a llamagate binary to run instead of building target/debug/llamagate)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
./models/fetch.sh
./scripts/setup-sdk.sh --python
if [ -n "${LLAMAGATE_BIN:-}" ]; then
  bin="$LLAMAGATE_BIN"
else
  cargo build --quiet --locked -p llamagate-server
  bin="$root/target/debug/llamagate"
fi
host=127.0.0.1
port=8321
for ((i = 1; i <= $#; i++)); do
  j=$((i + 1))
  if [ "${!i}" = "--port" ]; then port="${!j}"; fi
  if [ "${!i}" = "--host" ]; then host="${!j}"; fi
done
base="http://$host:$port"
# Same key file as the server (the default, relative to the repository root); created on first use.
# The premium_access scope puts the token in the premium rate-limit tier (the `tier` claim counts only when
# oauth_config.rate_limits.tier_claim says so); the model scope is the bundled model's.
mint="$bin token --issuer $base --scope model_smollm2_135m --scope premium_access --tier premium --sub dev-user --key-file $root/.llamagate/dev-issuer.json"
token=$($mint)
# The examples ask for a short greedy answer: the 135M default model rambles at temperature 1.
question="What is the capital of France? Answer in one sentence."
cat <<TXT

llamagate is starting on $base in DEVELOPMENT mode. Every API call needs a token; this one is valid for
an hour. Paste these into another shell, the first line first:

  export TOKEN=$token

  curl -s $base/v1/models -H "Authorization: Bearer \$TOKEN"

  curl -s $base/v1/chat/completions -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
    -d '{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"$question"}],"max_tokens":48,"temperature":0}'

  $root/.venv/bin/python -c 'import os; from llama_stack_client import LlamaStackClient
c = LlamaStackClient(base_url="$base", api_key=os.environ["TOKEN"])
r = c.chat.completions.create(model="smollm2-135m-instruct", max_tokens=48, temperature=0,
    messages=[{"role": "user", "content": "$question"}])
print(r.choices[0].message.content)'

  # a new token, when this one has expired:
  export TOKEN=\$($mint)

(Ctrl-C stops the server.)
TXT
exec "$bin" serve --config config/default.yaml --dev "$@"
