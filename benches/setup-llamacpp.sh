#!/usr/bin/env bash
# Installs the llama.cpp anchor the benches compare our engine with, inside the repository (.bench/,
# git-ignored), from one pinned source: the sdist of llama-cpp-python, which vendors llama.cpp.
#   (a) .bench/llamacpp-python: a virtualenv with the llama-cpp-python binding (and its server extras, and
#       numpy), built from the sdist for this machine's CPU (GGML_NATIVE=ON);
#   (b) .bench/llamacpp/bin: llama.cpp's own C++ `llama-server`, `llama-quantize` and `llama-bench`, built
#       with cmake from the sdist's vendor/llama.cpp, GGML_NATIVE=ON, statically linked.
# Idempotent: a part whose stamp (version and build flags) matches is not rebuilt; the sdist is downloaded
# once. Builds take a while (see the last run below).
#
# usage: benches/setup-llamacpp.sh            (then e.g. .bench/llamacpp-python/bin/python, .bench/llamacpp/bin/llama-bench)
#   env: JOBS (parallel compile jobs, default nproc), LLAMACPP_EXTRA_CMAKE (more cmake -D flags for both builds).
#
# If a native build dies with SIGILL (or SIGSEGV) when it first runs the model, the script rebuilds that part
# with AMX disabled (-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF): -march=native builds were
# seen to crash on AMX instructions inside a VM whose CPU advertises AMX but whose hypervisor does not enable it.
# Last run 2026-12-04 on the project's 2-core AMD EPYC VM: both native builds ran as built (binding: AVX2,
# AVX512, AVX512_VNNI, AVX512_BF16; `llama-server --version`: 0.5.0-dev, commit 0c1e570), no fallback; about
# 35 minutes for the binding and 17 for the tools there, with other builds sharing the cores.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned in benches/llamacpp.version (shared with models/tools/build.sh): the newest llama-cpp-python on the
# package index when this was written (`pip index versions llama-cpp-python`, 2026-12-04); the figures in
# benches/RESULTS.md were measured with it.
LLAMA_CPP_PYTHON_VERSION="$(cat benches/llamacpp.version)"

root="$PWD/.bench"
src="$root/src"
venv="$root/llamacpp-python"
prefix="$root/llamacpp"
jobs="${JOBS:-$(nproc)}"
native="-DGGML_NATIVE=ON"
no_amx="-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
extra="${LLAMACPP_EXTRA_CMAKE:-}"
./models/fetch.sh >/dev/null
model="$PWD/models/cache/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$src" "$prefix/bin"

# The sdist, downloaded with pip (the ordinary client), once.
sdist="$(ls "$src"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION".tar.gz 2>/dev/null || true)"
if [ -z "$sdist" ]; then
  echo "downloading the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist ..." >&2
  # --no-binary names the package alone: with `:all:` pip would also build the sdist's build backend
  # (scikit-build-core, hatchling, ...) from source just to read its metadata.
  python3 -m pip download --quiet --disable-pip-version-check --no-binary llama-cpp-python --no-deps \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$src"
  sdist="$src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz"
fi
tree="$src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION"
[ -d "$tree/vendor/llama.cpp" ] || tar -xzf "$sdist" -C "$src"

# The build tools (cmake, ninja) come into the venv from the package index, not from the system.
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# With them, the binding's own dependencies and its server extras (`python -m llama_cpp.server`,
# benches/run-concurrent.sh). Once installed, later runs need no network.
deps="cmake ninja numpy typing-extensions diskcache jinja2 uvicorn fastapi pydantic-settings sse-starlette \
starlette-context PyYAML"
if [ "$(cat "$venv/.deps-stamp" 2>/dev/null)" != "$deps" ]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # shellcheck disable=SC2086 # one argument per package
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $deps
  echo "$deps" >"$venv/.deps-stamp"
fi
export PATH="$venv/bin:$PATH"

# A signal death (SIGILL 132, SIGSEGV 139) means the native code does not run here.
crashed() { [ "$1" -eq 132 ] || [ "$1" -eq 139 ] || [ "$1" -eq 134 ]; }

# install_part NAME STAMP BUILD SMOKE: unless STAMP records this version and these flags, BUILD natively and
# run SMOKE; if SMOKE dies of a signal, BUILD again without AMX and run SMOKE again. STAMP records what ran.
install_part() {
  local name="$1" stamp="$2" build="$3" smoke="$4" want="$LLAMA_CPP_PYTHON_VERSION $native $extra" have rc=0
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [ "$have" = "$want" ] || [ "$have" = "$want $no_amx" ]; then
    echo "$name: already built ($have)" >&2
    return
  fi
  "$build" "$native $extra"
  "$smoke" || rc=$?
  if crashed "$rc"; then
    echo "$name: the native build crashed (exit $rc), rebuilding without AMX" >&2
    "$build" "$native $no_amx $extra"
    "$smoke"
    want="$want $no_amx"
  elif [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
  echo "$want" >"$stamp"
}

# (a) The Python binding.
binding_smoke() {
  "$venv/bin/python" - "$model" <<'PY'
import sys
import llama_cpp
from llama_cpp import Llama
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0)
print("binding ok:", llama_cpp.__version__, repr(out["choices"][0]["text"]))
print(llama_cpp.llama_print_system_info().decode().strip())
PY
}
build_binding() {
  local flags="$1"
  echo "building llama-cpp-python $LLAMA_CPP_PYTHON_VERSION with CMAKE_ARGS=\"$flags\" (takes a while) ..." >&2
  CMAKE_ARGS="$flags" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$venv/bin/python" -m pip install --quiet \
    --disable-pip-version-check --force-reinstall --no-deps --no-cache-dir "$sdist"
}
install_part "llama-cpp-python $LLAMA_CPP_PYTHON_VERSION in $venv" "$venv/.llamacpp-stamp" build_binding binding_smoke

# (b) llama.cpp's C++ tools from the vendored sources.
tools_smoke() {
  "$prefix/bin/llama-bench" -m "$model" -t 1 -p 16 -n 4 -r 1 -o md
}
build_tools() {
  local flags="$1" build="$prefix/build"
  echo "building llama-server, llama-quantize, llama-bench with $flags (takes a while) ..." >&2
  # No web UI (the benches use the API; the prebuilt one would be downloaded at build time) and no HTTPS.
  rm -rf "$build"
  # shellcheck disable=SC2086 # flags are separate -D arguments
  cmake -S "$tree/vendor/llama.cpp" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF \
    $flags >"$prefix/cmake.log"
  cmake --build "$build" -j "$jobs" --target llama-server llama-quantize llama-bench >"$prefix/build.log"
  cp "$build"/bin/llama-server "$build"/bin/llama-quantize "$build"/bin/llama-bench "$prefix/bin/"
}
install_part "llama.cpp tools in $prefix/bin" "$prefix/.stamp" build_tools tools_smoke

echo "llama.cpp anchor ready:"
echo "  LLAMACPP_PYTHON=$venv/bin/python"
echo "  LLAMA_SERVER=$prefix/bin/llama-server  ($("$prefix/bin/llama-server" --version 2>&1 | grep -m1 version || true))"
