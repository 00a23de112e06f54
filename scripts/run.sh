#!/usr/bin/env bash
# Runs the bundled default model on one prompt (fetching the model on first use).
# usage: scripts/run.sh "your question" [more llamagate generate flags]
set -euo pipefail
cd "$(dirname "$0")/.."
./models/fetch.sh
prompt="${1:-Explain in a few sentences why the sky is blue.}"
shift || true
exec cargo run --quiet --locked -p llamagate-server -- generate --prompt "$prompt" "$@"
