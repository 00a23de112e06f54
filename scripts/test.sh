#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (idempotently; after the first
# run nothing is downloaded again), then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

./models/fetch.sh
# llama.cpp's quantizer (below) is C++: a C++ compiler from the distribution when the machine has none.
if ! command -v g++ >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends g++
fi
# The K-quant variants the engine's llama.cpp agreement tests load: made from the default model by llama.cpp's
# quantizer (built once into .bench/, a few minutes; nothing to do when the checksummed files exist).
./models/make-variants.sh
# llama.cpp's llama-server, the upstream of the remote-provider tests: the same build directory (nothing to do
# once its stamp matches).
./models/tools/build.sh
./scripts/setup-sdk.sh
# The Llama Guard prompt fixture is what Llama Stack's own provider builds: its code, run again here.
python3 tests/guard-prompt/llama_stack_prompts.py .whl/llama_stack-0.7.3-py3-none-any.whl \
  --check crates/engine/tests/fixtures/guard-prompts/llama-stack-0.7.3.json
# The rate-limit tests start their own redis-server (never a system one) and fail, not skip, without it.
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends redis-server
fi
command -v redis-server >/dev/null 2>&1 || { echo "redis-server is required by the rate-limit tests" >&2; exit 1; }

# Tests run the engine on one thread: on a shared 2-core machine two spinning compute threads collapse
# as soon as another process takes a core.
export RAYON_NUM_THREADS=1 CANDLE_NUM_THREADS=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# The tests build the server with its test-only Llama Guard double (see crates/server/Cargo.toml); a
# release build leaves it out, and `cargo check` below keeps that build compiling.
FEATURES=(--features llamagate-server/test-guard)

cargo fmt --all -- --check
python3 scripts/check-module-cycles.py
cargo clippy --workspace --all-targets --locked "${FEATURES[@]}" -- -D warnings
# The release shape, without the test guard: only the server crate is checked again.
cargo clippy --workspace --all-targets --locked -- -D warnings
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "${FEATURES[@]}"
else
  cargo test --workspace --locked --no-fail-fast "${FEATURES[@]}"
fi

# SDK suites: the official clients against the real binary the test run above built (for the server's
# own integration tests, with the workspace's features: building it again alone would recompile it).
export LLAMAGATE_BIN="$PWD/target/debug/llamagate"
test -x "$LLAMAGATE_BIN" || cargo build --locked --workspace --bins "${FEATURES[@]}"
.venv/bin/python -m pytest -q tests/sdk/python
(cd tests/sdk && node --test ts/)
# The first five minutes: scripts/run.sh's printed examples and the README's quickstart, as a user pastes them.
.venv/bin/python -m pytest -q tests/quickstart
# The CUDA path compiles (no GPU needed): nvcc from NVIDIA's wheels, kernels for one architecture, its own
# target directory (the first run compiles candle's CUDA kernels, several minutes on two cores).
./scripts/check-cuda.sh
