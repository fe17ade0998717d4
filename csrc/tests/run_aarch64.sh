#!/usr/bin/env bash
# The kernel tests on AArch64 (scalar and NEON tiers) on an x86-64 Debian
# machine: Debian's cross compiler builds test_kernels, qemu-user runs it.
# Installs g++-aarch64-linux-gnu and qemu-user when they are missing (needs
# root or sudo). The 2^32 sweep is sampled (--quick): under emulation the
# full one takes far longer than the rest of CI. About 4 minutes on 2 cores.
#   bash csrc/tests/run_aarch64.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends \
    g++-aarch64-linux-gnu qemu-user
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build/aarch64 "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=csrc/tests/aarch64-linux-gnu.cmake \
  -DPTTH_BUILD_TESTS=ON -DPTTH_BUILD_PYTHON=OFF -DPTTH_USE_INSTALLED_ZLIBNG=OFF
cmake --build build/aarch64 -j 2 --target test_kernels
# One run checks every available tier (scalar and neon); PTTH_SIMD=avx2 also
# exercises the fallback to the widest tier available (neon) with its note.
PTTH_SIMD=avx2 qemu-aarch64 -L /usr/aarch64-linux-gnu build/aarch64/test_kernels --quick
