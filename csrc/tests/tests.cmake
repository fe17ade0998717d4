# C++ tests, run with ctest. ptth_add_cpp_test(name source) builds one test
# executable against ptth_core and registers it.
function(ptth_add_cpp_test name source)
  add_executable(${name} "${CMAKE_CURRENT_LIST_DIR}/${source}")
  target_link_libraries(${name} PRIVATE ptth_core)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(${name} PRIVATE -Wall -Wextra)
  endif()
  add_test(NAME ${name} COMMAND ${name} ${ARGN})
endfunction()

ptth_add_cpp_test(test_kernels test_kernels.cpp)
# The oracle's arithmetic must round like the kernels: never fused.
if(NOT MSVC)
  set_source_files_properties("${CMAKE_CURRENT_LIST_DIR}/test_kernels.cpp" PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
endif()
# Forced tiers (an unavailable one must fall back, not crash); every tier is
# still checked by the main run, so these sample the 2^32 sweep.
foreach(_tier scalar avx2 avx512 neon)
  add_test(NAME test_kernels_simd_${_tier} COMMAND test_kernels --quick)
  set_tests_properties(test_kernels_simd_${_tier} PROPERTIES ENVIRONMENT "PTTH_SIMD=${_tier}")
endforeach()

# The AVX-512 tier where the CPU has none: avx512.cpp built over SIMDe's
# portable intrinsics (libsimde-dev; run_avx512_simde.sh installs it) with
# the dispatch reporting AVX-512 available, then the same tests. The scalar
# and AVX2 tables come from ptth_core; the objects here replace its
# avx512.cpp and cpu.cpp, so the archive's copies are never linked.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$" AND NOT MSVC)
  include(CheckIncludeFileCXX)
  check_include_file_cxx("simde/x86/avx512.h" PTTH_HAVE_SIMDE)
  if(PTTH_HAVE_SIMDE)
    set(_ptth_simde "${CMAKE_CURRENT_LIST_DIR}/simde")
    add_executable(test_kernels_avx512_simde "${CMAKE_CURRENT_LIST_DIR}/test_kernels.cpp"
                   "${_ptth_simde}/avx512.cpp" "${_ptth_simde}/cpu.cpp")
    target_link_libraries(test_kernels_avx512_simde PRIVATE ptth_core)
    # -frounding-math: the shims convert toward zero through fesetround.
    set_source_files_properties("${_ptth_simde}/avx512.cpp" PROPERTIES
      COMPILE_OPTIONS "-mavx2;-mf16c;-ffp-contract=off;-frounding-math;-Wno-psabi")
    add_test(NAME test_kernels_avx512_simde COMMAND test_kernels_avx512_simde --quick)
  endif()
endif()

ptth_add_cpp_test(test_reader test_reader.cpp)
ptth_add_cpp_test(test_fuzz_regressions test_fuzz_regressions.cpp)
ptth_add_cpp_test(test_compression test_compression.cpp)
ptth_add_cpp_test(test_trust test_trust.cpp)
