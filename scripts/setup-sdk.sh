#!/usr/bin/env bash
# Installs what the SDK suites need: a Python venv (.venv) with the official llama-stack-client and OpenAI
# SDKs, node_modules for the TypeScript SDK, and the test authorization server (tests/oauth-as, node
# oidc-provider, pinned by its package-lock.json). Idempotent: each part is skipped when nothing changed since
# its last run.
# usage: scripts/setup-sdk.sh [--python]   (--python: only the Python venv, what scripts/run.sh's examples use)
set -euo pipefail
cd "$(dirname "$0")/.."
client=llama-stack-client==0.7.5

py_stamp=.venv/.llamagate-python-stamp
py_want="$( (cat tests/sdk/requirements.txt; echo "$client") | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$py_stamp" 2>/dev/null)" != "$py_want" ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python "$client"
  echo "$py_want" > "$py_stamp"
fi
[ "${1:-}" = "--python" ] && exit 0

# Llama Stack's own server package, only to run its Llama Guard provider's prompt code
# (tests/guard-prompt/llama_stack_prompts.py): it needs Python >= 3.12 to install, so the wheel is kept
# as a file and read from there. Pinned by checksum; downloaded once.
stack_wheel=.whl/llama_stack-0.7.3-py3-none-any.whl
stack_sha=c7b3e07a6f45a5db0a7d8779c5008b347db5b1b33fce71078e8904590bf71263
if ! echo "$stack_sha  $stack_wheel" | sha256sum --check --status 2>/dev/null; then
  mkdir -p .whl
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 llama-stack==0.7.3 -d .whl
  echo "$stack_sha  $stack_wheel" | sha256sum --check --status || { echo "llama-stack wheel checksum mismatch" >&2; exit 1; }
fi

stamp=.venv/.llamagate-sdk-stamp
want="$(cat tests/sdk/package.json tests/oauth-as/package.json | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -d tests/sdk/node_modules/llama-stack-client ] \
  && [ -d tests/oauth-as/node_modules/oidc-provider ]; then
  exit 0
fi
(cd tests/sdk && npm install --no-audit --no-fund --loglevel=error)
(cd tests/oauth-as && npm install --no-audit --no-fund --loglevel=error)
echo "$want" > "$stamp"
