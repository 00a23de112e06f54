# Sourced by the bench scripts, which first `set -euo pipefail` and `cd` to the repository root. Gives them:
#   default_model            the bundled GGUF (models/cache/SmolLM2-135M-Instruct.Q4_1.gguf)
#   need_model [FILE]        sets $model to FILE (default: the bundled one) and fetches the bundled one if absent
#   py, llama_server         the llama.cpp anchor: llama-cpp-python's interpreter and llama.cpp's C++ server, as
#                            benches/setup-llamacpp.sh installs them in .bench/ (env LLAMACPP_PYTHON, LLAMA_SERVER
#                            override; no machine paths)
#   need_llamacpp            runs benches/setup-llamacpp.sh (idempotent; the first time builds llama.cpp) unless
#                            LLAMACPP_PYTHON names an interpreter of one's own
#   build_engine_examples    builds crates/engine's examples (dev profile: engine and numeric crates at opt-level 3)
#   free_port                prints a free TCP port on 127.0.0.1
#   wait_for URL NAME PID    until URL answers 200 (at most 180 s); exits with NAME's log ($out/NAME.log) when
#                            process PID has exited first or the time is up
# shellcheck shell=bash

default_model=models/cache/SmolLM2-135M-Instruct.Q4_1.gguf
py="${LLAMACPP_PYTHON:-.bench/llamacpp-python/bin/python}"
llama_server="${LLAMA_SERVER:-.bench/llamacpp/bin/llama-server}"

need_model() {
  model="${1:-$default_model}"
  if [ "$model" = "$default_model" ] && [ ! -f "$model" ]; then
    ./models/fetch.sh >&2
  fi
}

need_llamacpp() {
  if [ -z "${LLAMACPP_PYTHON:-}" ]; then
    benches/setup-llamacpp.sh >&2
  elif [ ! -x "$py" ]; then
    echo "LLAMACPP_PYTHON=$py is not an executable (unset it to use benches/setup-llamacpp.sh's)" >&2
    exit 1
  fi
}

build_engine_examples() {
  echo "building the engine's examples (dev profile)..." >&2
  cargo build --quiet -p llamagate-engine --examples
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() {
  for _ in $(seq 360); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then
      echo "$2 exited before answering $1; its log: $out/$2.log" >&2
      tail -20 "$out/$2.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "$2 did not answer $1 within 180 s; its log: $out/$2.log" >&2
  exit 1
}
