#!/usr/bin/env bash
# Installs every Debian 12 package mlpc needs to build, test and benchmark.
# Idempotent; run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # parser generator: the antlr4 tool (Java) and the C++ runtime
  antlr4 default-jre-headless libantlr4-runtime-dev
  # plan and RPC contracts; the runtime's RPCs (gRPC) and metadata store (SQLite)
  protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc libsqlite3-dev
  # libraries: JSON (nlohmann), CLI parsing (CLI11), SHA-256 content hashes (OpenSSL)
  nlohmann-json3-dev libcli11-dev libssl-dev
  # the openssl tool: the TLS test makes a self-signed certificate with it
  openssl
  # kernels compiled to native code: LLVM 16 (ORC JIT; the shared libLLVM-16)
  llvm-16-dev
  # data and train stages: gzip'd IDX files (zlib), LibTorch 1.13 with c10d
  # Gloo, OpenBLAS (LibTorch trains ~10x slower on the reference BLAS), and
  # the real data of pipelines/quickstart.mlp
  zlib1g-dev libtorch-dev libgloo-dev libopenblas0-openmp dataset-fashion-mnist
  # the training benchmarks' peer: PyTorch in Python over the same LibTorch
  python3-torch
  # a faster malloc for the many small allocations of the front end
  libmimalloc-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3 snakemake
  # the runtime benchmarks' peer: Dask distributed
  python3-distributed
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "setup.sh: run as root (apt-get needs it)" >&2; exit 2
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
