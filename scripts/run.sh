#!/usr/bin/env bash
# Runs the server on the bundled default model (fetching the model on first use), on port 8321, in
# development mode (`serve --dev`): the server is its own token issuer, signing with a persistent key in
# .llamagate/dev-issuer.json (git-ignored), and the token printed below is accepted by it.
# usage: scripts/run.sh [more `llamagate serve` flags, e.g. --port 9000]
set -euo pipefail
cd "$(dirname "$0")/.."
./models/fetch.sh
cargo build --quiet --locked -p llamagate-server
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
scopes="--scope model_smollm2_135m --scope premium_access"
token=$(target/debug/llamagate token --config config/default.yaml --issuer "$base" $scopes --tier premium --sub dev-user)
cat <<TXT

llamagate is starting on $base in DEVELOPMENT mode (Ctrl-C stops it). Every API call needs a token;
this one is valid for an hour (mint another with:
  target/debug/llamagate token --config config/default.yaml --issuer $base $scopes --tier premium). Try:

  TOKEN=$token

  curl -s $base/v1/models -H "Authorization: Bearer \$TOKEN"
  curl -s $base/v1/chat/completions -H "Authorization: Bearer \$TOKEN" -H 'content-type: application/json' \\
    -d '{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Why is the sky blue?"}],"max_tokens":64}'

  python3 -c 'from llama_stack_client import LlamaStackClient as C; c = C(base_url="$base", api_key="$token");
print(c.chat.completions.create(model="smollm2-135m-instruct", messages=[{"role":"user","content":"Hi!"}]).choices[0].message.content)'

TXT
exec target/debug/llamagate serve --config config/default.yaml --dev "$@"
