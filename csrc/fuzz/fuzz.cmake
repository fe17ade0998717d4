# libFuzzer targets over ptth_core (csrc/fuzz), clang only, OFF by default.
#
# The fuzz build instruments ptth_core and the bundled zlib-ng for coverage,
# ASan and UBSan, so give it a build directory of its own:
#   cmake -S . -B build/fuzz -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
#         -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPTTH_BUILD_FUZZERS=ON -DPTTH_BUILD_TESTS=OFF
#   cmake --build build/fuzz --target ptth_fuzzers
# .ci/fuzz.sh does that, writes the seed corpus (make_corpus.py) and runs each target.
option(PTTH_BUILD_FUZZERS "Build the libFuzzer targets in csrc/fuzz (clang only)" OFF)
if(NOT PTTH_BUILD_FUZZERS)
  return()
endif()
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang" OR NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "PTTH_BUILD_FUZZERS needs clang and clang++ (libFuzzer): configure with "
                      "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
endif()
if(PTTH_BUILD_PYTHON)
  message(FATAL_ERROR "PTTH_BUILD_FUZZERS instruments ptth_core; build the Python module elsewhere")
endif()

set(_ptth_fuzz "${CMAKE_CURRENT_LIST_DIR}")
set(_ptth_fuzz_sanitize -fsanitize=address,undefined -fno-sanitize-recover=all
                        -fno-omit-frame-pointer -g)

# Coverage for the code under test: the core and, when built here, zlib-ng
# (its inflate states guide the fuzzer through broken streams).
target_compile_options(ptth_core PRIVATE -fsanitize=fuzzer-no-link ${_ptth_fuzz_sanitize})
target_link_options(ptth_core INTERFACE -fsanitize=address,undefined)
if(PTTH_ZLIBNG_ORIGIN STREQUAL "bundled-build")
  target_compile_options(${PTTH_ZLIBNG_TARGET} PRIVATE -fsanitize=fuzzer-no-link ${_ptth_fuzz_sanitize})
endif()
if(PTTH_LIBDEFLATE_ORIGIN STREQUAL "bundled-build")
  target_compile_options(${PTTH_LIBDEFLATE_TARGET} PRIVATE -fsanitize=fuzzer-no-link ${_ptth_fuzz_sanitize})
endif()

add_library(ptth_fuzz_common STATIC "${_ptth_fuzz}/fuzz_common.cpp")
target_link_libraries(ptth_fuzz_common PUBLIC ptth_core)
target_compile_options(ptth_fuzz_common PRIVATE ${_ptth_fuzz_sanitize} -Wall -Wextra)

set(PTTH_FUZZERS fuzz_loads fuzz_stream fuzz_inflate fuzz_aggregate fuzz_restore)
foreach(_t IN LISTS PTTH_FUZZERS)
  add_executable(${_t} "${_ptth_fuzz}/${_t}.cpp")
  target_link_libraries(${_t} PRIVATE ptth_fuzz_common)
  target_compile_options(${_t} PRIVATE -fsanitize=fuzzer ${_ptth_fuzz_sanitize} -Wall -Wextra)
  # mmap/mremap go through fuzz_common.cpp's allocation limit.
  target_link_options(${_t} PRIVATE -fsanitize=fuzzer,address,undefined
                      -Wl,--wrap=mmap -Wl,--wrap=mremap)
endforeach()
add_custom_target(ptth_fuzzers DEPENDS ${PTTH_FUZZERS})
