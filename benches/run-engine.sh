#!/usr/bin/env bash
# Engine vs llama.cpp on the default GGUF, 1 and 2 threads. Needs llama-cpp-python==0.3.36 in the Python
# given by LLAMACPP_PYTHON. It builds from source in about 9 minutes:
#   CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON \
#     -DGGML_AVX512_VNNI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
#     pip install llama-cpp-python==0.3.36
# (a -march=native build segfaults on the Intel Xeon VMs with AMX used here).
set -euo pipefail
cd "$(dirname "$0")/.."
./models/fetch.sh >/dev/null
model=models/cache/SmolLM2-135M-Instruct.Q4_1.gguf
py="${LLAMACPP_PYTHON:-python3}"
cargo build --quiet -p llamagate-engine --example throughput
for threads in 1 2; do
  RAYON_NUM_THREADS=$threads CANDLE_NUM_THREADS=$threads target/debug/examples/throughput "$model" 512 128
  "$py" benches/llamacpp_throughput.py "$model" "$threads" 512 128
done
