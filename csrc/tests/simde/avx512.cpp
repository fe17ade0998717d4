// core/simd/avx512.cpp on a CPU without AVX-512: the same source over
// SIMDe's portable intrinsics (with native aliases, so the code compiles
// unchanged), built with -mavx2 -mf16c so SIMDe runs its 512-bit vectors as
// pairs of native 256-bit ones. Only for test_kernels_avx512_simde.
#include <immintrin.h>  // first: the include in avx512.cpp is then a no-op

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>

#include "avx512_shims.hpp"
#include "core/simd/avx512.cpp"
