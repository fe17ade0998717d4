# SIMD element kernels and their dispatch, zlib-ng style: one source file per
# instruction set, ISA flags on that file only (never on the target: inlining
# would leak vector instructions into code that runs on every CPU), and
# PTTH_HAVE_<TIER> on cpu.cpp for each tier compiled in. Everything in a SIMD
# file stays in an anonymous namespace except its table: an inline function
# with external linkage would be merged across files, and the linker could
# keep the AVX-512 copy for every caller.
set(_ptth_k "${CMAKE_CURRENT_LIST_DIR}")
set(_ptth_kernel_sources "${_ptth_k}/cpu.cpp" "${_ptth_k}/scalar.cpp")
set(_ptth_kernel_tiers "")
set(_ptth_kernel_tier_names scalar)

if(MSVC)
  set(_ptth_no_contract "/fp:precise")
else()
  # Results must match NumPy's separate multiply and add bit for bit.
  set(_ptth_no_contract "-ffp-contract=off")
endif()
set_source_files_properties("${_ptth_k}/scalar.cpp" PROPERTIES COMPILE_OPTIONS "${_ptth_no_contract}")

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x86|i[3-6]86)$")
  list(APPEND _ptth_kernel_sources "${_ptth_k}/avx2.cpp" "${_ptth_k}/avx512.cpp")
  list(APPEND _ptth_kernel_tiers PTTH_HAVE_AVX2 PTTH_HAVE_AVX512)
  list(APPEND _ptth_kernel_tier_names avx2 avx512)
  if(MSVC)
    set(_ptth_avx2_flags "/arch:AVX2")
    set(_ptth_avx512_flags "/arch:AVX512")
  else()
    set(_ptth_avx2_flags -mavx2 -mf16c)
    set(_ptth_avx512_flags -mavx512f -mavx512bw -mavx512vl -mavx512dq -mf16c)
  endif()
  set_source_files_properties("${_ptth_k}/avx2.cpp" PROPERTIES
    COMPILE_OPTIONS "${_ptth_avx2_flags};${_ptth_no_contract}")
  set_source_files_properties("${_ptth_k}/avx512.cpp" PROPERTIES
    COMPILE_OPTIONS "${_ptth_avx512_flags};${_ptth_no_contract}")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  # Advanced SIMD and FP16 conversion are baseline on AArch64: no flags.
  list(APPEND _ptth_kernel_sources "${_ptth_k}/neon.cpp")
  list(APPEND _ptth_kernel_tiers PTTH_HAVE_NEON)
  list(APPEND _ptth_kernel_tier_names neon)
  set_source_files_properties("${_ptth_k}/neon.cpp" PROPERTIES COMPILE_OPTIONS "${_ptth_no_contract}")
endif()

set_source_files_properties("${_ptth_k}/cpu.cpp" PROPERTIES COMPILE_DEFINITIONS "${_ptth_kernel_tiers}")
target_sources(ptth_core PRIVATE ${_ptth_kernel_sources})
string(REPLACE ";" " " _ptth_kernel_tier_names "${_ptth_kernel_tier_names}")
message(STATUS "ptth: SIMD tiers compiled in: ${_ptth_kernel_tier_names}")
