#!/usr/bin/env bash
# Compiles the engine with its `cuda` feature — candle's CUDA backend and kernels, cudarc's bindings, our
# device selection — on a machine with no GPU: nvcc comes from scripts/cuda-toolkit.sh. The kernels are
# compiled for one GPU architecture (CUDA_COMPUTE_CAP, default 90: Hopper, the H100/H200) into their own
# target directory, target/cuda, so the CPU build is not disturbed.
# usage: scripts/check-cuda.sh [cargo subcommand, default: check]   env: CUDA_COMPUTE_CAP
set -euo pipefail
cd "$(dirname "$0")/.."
toolkit="$(./scripts/cuda-toolkit.sh)"
export PATH="$toolkit/bin:$PATH" CUDA_ROOT="$toolkit" CUDA_PATH="$toolkit" CUDA_HOME="$toolkit"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" CARGO_TARGET_DIR="$PWD/target/cuda"
# The kernels compile in parallel on every core (the test script pins RAYON_NUM_THREADS to 1 for the engine,
# which the kernel builder would otherwise follow).
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-$(nproc)}"
cargo "${1:-check}" --locked -p llamagate-engine -p llamagate-server --features llamagate-engine/cuda
