# zlib-ng for ptth_core, used through its native zng_ API.
#
# 1. An installed zlib-ng (2.3.x) found by CMake is preferred.
# 2. Otherwise the pinned zlib-ng 2.3.3 source tree is taken from the zlib-ng
#    Python package's source distribution on PyPI (the same zlib-ng the
#    fallback's `zlib_ng` module is built from), checked against its SHA-256,
#    cached under build/downloads/ and built as a static library.
#    PTTH_ZLIBNG_TARBALL names a local copy of that archive for offline builds.
#
# Sets PTTH_ZLIBNG_TARGET and PTTH_ZLIBNG_ORIGIN ("installed" or "bundled-build").

set(PTTH_ZLIBNG_SDIST_URL
  "https://files.pythonhosted.org/packages/25/c8/2914b13c7972dccf8774947ffe781b761b483aa190e55a4aa89886982daa/zlib_ng-1.1.0.tar.gz")
set(PTTH_ZLIBNG_SDIST_SHA256 "08a3a8468d4f130e3dc80d28ec42fcc7a878a57dfed616233e791066327d78a3")
set(PTTH_ZLIBNG_TARBALL "" CACHE FILEPATH "Local copy of zlib_ng-1.1.0.tar.gz (zlib-ng 2.3.3 sources)")
option(PTTH_USE_INSTALLED_ZLIBNG "Use an installed zlib-ng when CMake finds one" ON)

if(PTTH_USE_INSTALLED_ZLIBNG)
  find_package(zlib-ng 2.3 CONFIG QUIET)
endif()

if(zlib-ng_FOUND)
  message(STATUS "ptth: using installed zlib-ng ${zlib-ng_VERSION} (${zlib-ng_DIR})")
  set(PTTH_ZLIBNG_TARGET zlib-ng::zlib)
  set(PTTH_ZLIBNG_ORIGIN "installed")
  return()
endif()

if(PTTH_ZLIBNG_TARBALL)
  set(_ptth_zng_archive "${PTTH_ZLIBNG_TARBALL}")
else()
  if(DEFINED ENV{PTTH_ZLIBNG_TARBALL} AND EXISTS "$ENV{PTTH_ZLIBNG_TARBALL}")
    set(_ptth_zng_archive "$ENV{PTTH_ZLIBNG_TARBALL}")
  else()
    set(_ptth_zng_archive "${CMAKE_CURRENT_LIST_DIR}/../build/downloads/zlib_ng-1.1.0.tar.gz")
  endif()
endif()

if(EXISTS "${_ptth_zng_archive}")
  file(SHA256 "${_ptth_zng_archive}" _ptth_zng_hash)
  if(NOT _ptth_zng_hash STREQUAL PTTH_ZLIBNG_SDIST_SHA256)
    message(STATUS "ptth: ${_ptth_zng_archive} has the wrong SHA-256; fetching again")
    file(REMOVE "${_ptth_zng_archive}")
  endif()
endif()
if(NOT EXISTS "${_ptth_zng_archive}")
  message(STATUS "ptth: fetching zlib-ng 2.3.3 sources (zlib_ng-1.1.0 sdist)")
  file(DOWNLOAD "${PTTH_ZLIBNG_SDIST_URL}" "${_ptth_zng_archive}"
       EXPECTED_HASH SHA256=${PTTH_ZLIBNG_SDIST_SHA256}
       TLS_VERIFY ON STATUS _ptth_zng_status)
  list(GET _ptth_zng_status 0 _ptth_zng_rc)
  if(NOT _ptth_zng_rc EQUAL 0)
    file(REMOVE "${_ptth_zng_archive}")
    message(FATAL_ERROR "ptth: could not fetch zlib-ng sources: ${_ptth_zng_status}. "
                        "Install zlib-ng 2.3.x or pass -DPTTH_ZLIBNG_TARBALL=<zlib_ng-1.1.0.tar.gz>.")
  endif()
endif()

set(_ptth_zng_root "${CMAKE_BINARY_DIR}/_zlibng")
set(_ptth_zng_src "${_ptth_zng_root}/zlib_ng-1.1.0/src/zlib_ng/zlib-ng")
if(NOT EXISTS "${_ptth_zng_src}/CMakeLists.txt")
  file(ARCHIVE_EXTRACT INPUT "${_ptth_zng_archive}" DESTINATION "${_ptth_zng_root}"
       PATTERNS "zlib_ng-1.1.0/src/zlib_ng/zlib-ng/*")
endif()

# Function scope keeps these settings away from ptth's own options.
function(_ptth_add_zlibng src bin)
  set(ZLIB_COMPAT OFF)
  set(ZLIB_ENABLE_TESTS OFF)
  set(BUILD_TESTING OFF)
  set(WITH_GTEST OFF)
  set(WITH_GZFILEOP OFF)
  set(WITH_NATIVE_INSTRUCTIONS OFF)
  set(WITH_RUNTIME_CPU_DETECTION ON)
  set(BUILD_SHARED_LIBS OFF)
  set(SKIP_INSTALL_ALL ON)
  add_subdirectory("${src}" "${bin}" EXCLUDE_FROM_ALL)
endfunction()
_ptth_add_zlibng("${_ptth_zng_src}" "${CMAKE_BINARY_DIR}/_zlibng-build")

set(PTTH_ZLIBNG_TARGET zlib-ng)
set(PTTH_ZLIBNG_ORIGIN "bundled-build")
