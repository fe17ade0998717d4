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
ptth_add_cpp_test(test_reader test_reader.cpp)
ptth_add_cpp_test(test_fuzz_regressions test_fuzz_regressions.cpp)
ptth_add_cpp_test(test_trust test_trust.cpp)
