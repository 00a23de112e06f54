#!/usr/bin/env bash
# NVIDIA's CUDA compiler (nvcc 13.4 with its headers and runtime), from NVIDIA's own Python wheels into
# .bench/cuda-13.4/, for compiling the engine's `cuda` feature on a machine without a GPU or a system CUDA
# toolkit (Debian ships nvcc only in non-free, and an older one). No driver or GPU is needed to compile.
# 13.4 is the newest release the pinned cudarc (0.19) knows; the C++ core libraries (cccl) have no 13.4
# wheel, so 13.3's is used, as the 13.4 toolkit bundles headers from that line.
# Idempotent: prints the toolkit's root and does nothing else when it is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD/.bench/cuda-13.4"
toolkit="$root/nvidia/cu13"
if [ ! -x "$toolkit/bin/nvcc" ] || ! "$toolkit/bin/nvcc" --version 2>/dev/null | grep -q "release 13.4"; then
  python3 -m venv "$root.venv" >/dev/null 2>&1 || true
  pip="$root.venv/bin/pip"
  [ -x "$pip" ] || pip="python3 -m pip"
  rm -rf "$root"
  $pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: --target "$root" \
    nvidia-cuda-nvcc==13.4.92 nvidia-cuda-crt==13.4.92 nvidia-nvvm==13.4.92 nvidia-cuda-runtime==13.4.92 \
    nvidia-cuda-cccl==13.3.5.0.6 >&2
  chmod +x "$toolkit"/bin/* "$toolkit"/nvvm/bin/*
fi
echo "$toolkit"
