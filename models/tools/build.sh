#!/usr/bin/env bash
# Builds the llama.cpp programs the tests need, into .bench/llamacpp-min/bin/ (git-ignored):
#   quantize          llama.cpp's quantizer (`llama_model_quantize`), for models/make-variants.sh;
#   reference-logits  llama.cpp's logits on a model file, for models/tools/make-reference.sh;
#   llama-server      llama.cpp's OpenAI-compatible server, the real upstream of the remote-provider tests
#                     (crates/server/tests/it/remote_providers.rs).
# All three link libllama and ggml, built from the pinned llama-cpp-python sdist (benches/llamacpp.version,
# the same source benches/setup-llamacpp.sh builds the benchmark anchor from), GGML_NATIVE=ON, statically.
# llama-server is a target of the same build directory (LLAMA_BUILD_COMMON/TOOLS/SERVER on, its web UI off):
# it reuses the compiled ggml and llama objects and adds llama-common, mtmd and the server itself (about 20
# minutes more on a 2-core machine, once). Turning those options on in an existing build directory changes
# no compile command of ggml or llama, so an earlier libllama-only build is not compiled again.
# The quantizer's output does not depend on the CPU: the quantization code lives in ggml-base, which is
# compiled without -march flags (the file checksums in models/manifest.json hold it to that).
#
# Why not benches/setup-llamacpp.sh: it builds the Python binding and the server too (about 50 minutes on
# a 2-core machine); libllama alone is what the tests need. Idempotent: nothing is rebuilt when the stamp
# (version and the programs' sources) matches.
#
# usage: models/tools/build.sh        env: JOBS (parallel compile jobs, default nproc)
set -euo pipefail
cd "$(dirname "$0")/../.."

version="$(cat benches/llamacpp.version)"
root="$PWD/.bench"
src="$root/src"
out="$root/llamacpp-min"
build="$out/build"
jobs="${JOBS:-$(nproc)}"
want="$version server $(cat models/tools/*.cpp | sha256sum | cut -c1-16)"
if [ "$(cat "$out/.stamp" 2>/dev/null)" = "$want" ] && [ -x "$out/bin/quantize" ] && [ -x "$out/bin/reference-logits" ] \
  && [ -x "$out/bin/llama-server" ]; then
  exit 0
fi
mkdir -p "$src" "$out/bin"

# The sdist, downloaded with pip (the ordinary client), once.
sdist="$src/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  echo "downloading the llama-cpp-python $version sdist ..." >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-binary llama-cpp-python --no-deps \
    "llama-cpp-python==$version" -d "$src"
fi
tree="$src/llama_cpp_python-$version/vendor/llama.cpp"
[ -d "$tree" ] || tar -xzf "$sdist" -C "$src"

# cmake and ninja from the system, or else into a virtualenv from the package index.
if ! command -v cmake >/dev/null 2>&1 || ! command -v ninja >/dev/null 2>&1; then
  tools="$root/buildtools"
  [ -x "$tools/bin/cmake" ] && [ -x "$tools/bin/ninja" ] || {
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check cmake ninja
  }
  export PATH="$tools/bin:$PATH"
fi

echo "building libllama and llama-server $version (a few minutes; llama-server about 20 more, once) ..." >&2
# Configured again when the directory was made by the earlier libllama-only version of this script.
if [ ! -f "$build/build.ninja" ] || ! grep -q '^LLAMA_BUILD_SERVER:BOOL=ON' "$build/CMakeCache.txt"; then
  cmake -S "$tree" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DGGML_CCACHE=OFF -DGGML_NATIVE=ON >"$out/cmake.log"
fi
nice -n 10 cmake --build "$build" -j "$jobs" --target llama llama-server >"$out/build.log"
cp "$build/bin/llama-server" "$out/bin/llama-server"

libs=("$build/src/libllama.a" "$build/ggml/src/libggml.a" "$build/ggml/src/libggml-cpu.a" "$build/ggml/src/libggml-base.a")
for tool in quantize reference-logits; do
  nice -n 10 g++ -O2 -std=c++17 -I "$tree/include" -I "$tree/ggml/include" "models/tools/${tool//-/_}.cpp" \
    "${libs[@]}" -fopenmp -lpthread -ldl -lm -o "$out/bin/$tool"
done
echo "$want" >"$out/.stamp"
echo "llama.cpp tools ready: $out/bin" >&2
