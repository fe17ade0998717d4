#!/usr/bin/env bash
# The AVX-512 kernel tier tested on a CPU without AVX-512 (any x86-64 with
# AVX2 and F16C): test_kernels_avx512_simde builds avx512.cpp over SIMDe's
# portable intrinsics. Installs Debian's libsimde-dev when it is missing
# (needs root or sudo). On a CPU with AVX-512, ctest's test_kernels runs the
# real tier and this adds nothing. About a minute on 2 cores.
#   bash csrc/tests/run_avx512_simde.sh       # from the repository root
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ ! -e /usr/include/simde/x86/avx512.h ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends libsimde-dev
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# -U: a configure that ran before SIMDe was installed cached "not found".
cmake -S . -B build/cpp "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -UPTTH_HAVE_SIMDE \
  -DPTTH_BUILD_TESTS=ON -DPTTH_BUILD_PYTHON=OFF
cmake --build build/cpp -j 2 --target test_kernels_avx512_simde
build/cpp/test_kernels_avx512_simde --quick
