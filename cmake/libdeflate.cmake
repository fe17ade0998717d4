# libdeflate for ptth_core's whole-buffer inflate (inflate_whole).
#
# Always the pinned libdeflate 1.26 source tree of the `deflate` 0.9.0 source
# distribution on PyPI, checked against its SHA-256, cached under
# build/downloads/, made strict (below) and built as a static library.
# PTTH_LIBDEFLATE_TARBALL names a local copy of that archive for offline builds.
#
# Why never an installed libdeflate: every release accepts what RFC 1951
# reserves and zlib rejects -- dynamic headers with more than 286
# literal/length or 30 distance codes, and the fixed code's symbols 286/287
# and distances 30/31 in static blocks. ptth's one-shot decodes would then
# accept streams its streaming decoder (zlib-ng) refuses, and the engines
# would disagree. Two edits close that: such a dynamic header is bad data, and
# a static block makes the whole-buffer inflate decline (ptth then takes the
# zlib-ng path, which reports the exact error; only small streams use static
# blocks).
#
# Sets PTTH_LIBDEFLATE_TARGET, PTTH_LIBDEFLATE_ORIGIN ("bundled-build" or
# "off") and PTTH_LIBDEFLATE_VERSION.

set(PTTH_LIBDEFLATE_SDIST_URL
  "https://files.pythonhosted.org/packages/99/37/6822da3fcc811eb6839f4c1165407c4f23580e6b29ea29509c9544f4e604/deflate-0.9.0.tar.gz")
set(PTTH_LIBDEFLATE_SDIST_SHA256 "962e0a6f1ea3a94b900a8ea0ce138fa92bfcbafda5b86367104a259ffcd3462b")
set(PTTH_LIBDEFLATE_TARBALL "" CACHE FILEPATH "Local copy of deflate-0.9.0.tar.gz (libdeflate 1.26 sources)")
option(PTTH_USE_LIBDEFLATE "Inflate whole in-memory buffers with libdeflate" ON)

set(PTTH_LIBDEFLATE_TARGET "")
set(PTTH_LIBDEFLATE_ORIGIN "off")
set(PTTH_LIBDEFLATE_VERSION "")

if(NOT PTTH_USE_LIBDEFLATE)
  message(STATUS "ptth: libdeflate disabled; whole-buffer inflate uses zlib-ng")
  return()
endif()

if(PTTH_LIBDEFLATE_TARBALL)
  set(_ptth_ldf_archive "${PTTH_LIBDEFLATE_TARBALL}")
elseif(DEFINED ENV{PTTH_LIBDEFLATE_TARBALL} AND EXISTS "$ENV{PTTH_LIBDEFLATE_TARBALL}")
  set(_ptth_ldf_archive "$ENV{PTTH_LIBDEFLATE_TARBALL}")
else()
  set(_ptth_ldf_archive "${CMAKE_CURRENT_LIST_DIR}/../build/downloads/deflate-0.9.0.tar.gz")
endif()

if(EXISTS "${_ptth_ldf_archive}")
  file(SHA256 "${_ptth_ldf_archive}" _ptth_ldf_hash)
  if(NOT _ptth_ldf_hash STREQUAL PTTH_LIBDEFLATE_SDIST_SHA256)
    message(STATUS "ptth: ${_ptth_ldf_archive} has the wrong SHA-256; fetching again")
    file(REMOVE "${_ptth_ldf_archive}")
  endif()
endif()
if(NOT EXISTS "${_ptth_ldf_archive}")
  message(STATUS "ptth: fetching libdeflate 1.26 sources (deflate-0.9.0 sdist)")
  file(DOWNLOAD "${PTTH_LIBDEFLATE_SDIST_URL}" "${_ptth_ldf_archive}"
       EXPECTED_HASH SHA256=${PTTH_LIBDEFLATE_SDIST_SHA256}
       TLS_VERIFY ON STATUS _ptth_ldf_status)
  list(GET _ptth_ldf_status 0 _ptth_ldf_rc)
  if(NOT _ptth_ldf_rc EQUAL 0)
    file(REMOVE "${_ptth_ldf_archive}")
    message(FATAL_ERROR "ptth: could not fetch libdeflate sources: ${_ptth_ldf_status}. "
                        "Pass -DPTTH_LIBDEFLATE_TARBALL=<deflate-0.9.0.tar.gz> "
                        "or -DPTTH_USE_LIBDEFLATE=OFF.")
  endif()
endif()

set(_ptth_ldf_root "${CMAKE_BINARY_DIR}/_libdeflate")
set(_ptth_ldf_src "${_ptth_ldf_root}/deflate-0.9.0/libdeflate")
if(NOT EXISTS "${_ptth_ldf_src}/CMakeLists.txt")
  file(ARCHIVE_EXTRACT INPUT "${_ptth_ldf_archive}" DESTINATION "${_ptth_ldf_root}"
       PATTERNS "deflate-0.9.0/libdeflate/*")
endif()

# The strictness edits (idempotent: a marked file is left as it is).
set(_ptth_ldf_tpl "${_ptth_ldf_src}/lib/decompress_template.h")
file(READ "${_ptth_ldf_tpl}" _ptth_ldf_text)
if(NOT _ptth_ldf_text MATCHES "ptth: strict")
  set(_ptth_ldf_counts "num_offset_syms = 1 + ((bitbuf >> 8) & BITMASK(5));")
  set(_ptth_ldf_static "SAFETY_CHECK(block_type == DEFLATE_BLOCKTYPE_STATIC_HUFFMAN);")
  string(FIND "${_ptth_ldf_text}" "${_ptth_ldf_counts}" _ptth_at_counts)
  string(FIND "${_ptth_ldf_text}" "${_ptth_ldf_static}" _ptth_at_static)
  if(_ptth_at_counts EQUAL -1 OR _ptth_at_static EQUAL -1)
    message(FATAL_ERROR "ptth: libdeflate's decompress_template.h is not the expected 1.26 source")
  endif()
  string(REPLACE "${_ptth_ldf_counts}"
    "${_ptth_ldf_counts}\n\t\t/* ptth: strict, as zlib: at most 286 litlen and 30 offset codes */\n\t\tSAFETY_CHECK(num_litlen_syms <= 286 && num_offset_syms <= 30);"
    _ptth_ldf_text "${_ptth_ldf_text}")
  string(REPLACE "${_ptth_ldf_static}"
    "${_ptth_ldf_static}\n\t\t/* ptth: strict: the fixed code holds reserved symbols; zlib-ng decodes it */\n\t\tSAFETY_CHECK(0);"
    _ptth_ldf_text "${_ptth_ldf_text}")
  file(WRITE "${_ptth_ldf_tpl}" "${_ptth_ldf_text}")
endif()

# Function scope keeps these settings away from ptth's own options.
function(_ptth_add_libdeflate src bin)
  set(CMAKE_POLICY_DEFAULT_CMP0077 NEW)  # options keep the values set here
  set(LIBDEFLATE_BUILD_STATIC_LIB ON)
  set(LIBDEFLATE_BUILD_SHARED_LIB OFF)
  set(LIBDEFLATE_COMPRESSION_SUPPORT OFF)
  set(LIBDEFLATE_BUILD_GZIP OFF)
  set(LIBDEFLATE_BUILD_TESTS OFF)
  set(LIBDEFLATE_INSTALL OFF)
  add_subdirectory("${src}" "${bin}" EXCLUDE_FROM_ALL)
endfunction()
_ptth_add_libdeflate("${_ptth_ldf_src}" "${CMAKE_BINARY_DIR}/_libdeflate-build")

set(PTTH_LIBDEFLATE_TARGET libdeflate_static)
set(PTTH_LIBDEFLATE_ORIGIN "bundled-build")
set(PTTH_LIBDEFLATE_VERSION "1.26")
