// The dispatch for test_kernels_avx512_simde: both x86 tiers compiled in,
// and AVX-512 reported available wherever AVX2 is (its table is the SIMDe
// build in avx512.cpp next to this file).
#define PTTH_HAVE_AVX2 1
#define PTTH_HAVE_AVX512 1
#define PTTH_AVX512_EMULATED 1
#include "core/simd/cpu.cpp"
