# libdeflate for ptth_core's whole-buffer inflate (inflate_whole).
#
# 1. An installed libdeflate >= 1.14 found by CMake (its CMake package or
#    pkg-config) is preferred: inflate output does not depend on the version.
# 2. Otherwise the pinned libdeflate 1.26 source tree is taken from the
#    `deflate` 0.9.0 source distribution on PyPI, checked against its SHA-256,
#    cached under build/downloads/ and built as a static library.
#    PTTH_LIBDEFLATE_TARBALL names a local copy of that archive for offline builds.
#
# Sets PTTH_LIBDEFLATE_TARGET, PTTH_LIBDEFLATE_ORIGIN ("installed", "bundled-build"
# or "off") and PTTH_LIBDEFLATE_VERSION.

set(PTTH_LIBDEFLATE_SDIST_URL
  "https://files.pythonhosted.org/packages/99/37/6822da3fcc811eb6839f4c1165407c4f23580e6b29ea29509c9544f4e604/deflate-0.9.0.tar.gz")
set(PTTH_LIBDEFLATE_SDIST_SHA256 "962e0a6f1ea3a94b900a8ea0ce138fa92bfcbafda5b86367104a259ffcd3462b")
set(PTTH_LIBDEFLATE_TARBALL "" CACHE FILEPATH "Local copy of deflate-0.9.0.tar.gz (libdeflate 1.26 sources)")
option(PTTH_USE_LIBDEFLATE "Inflate whole in-memory buffers with libdeflate" ON)
option(PTTH_USE_INSTALLED_LIBDEFLATE "Use an installed libdeflate >= 1.14 when CMake finds one" ON)

set(PTTH_LIBDEFLATE_TARGET "")
set(PTTH_LIBDEFLATE_ORIGIN "off")
set(PTTH_LIBDEFLATE_VERSION "")

if(NOT PTTH_USE_LIBDEFLATE)
  message(STATUS "ptth: libdeflate disabled; whole-buffer inflate uses zlib-ng")
  return()
endif()

if(PTTH_USE_INSTALLED_LIBDEFLATE)
  find_package(libdeflate 1.14 CONFIG QUIET)
  if(libdeflate_FOUND AND TARGET libdeflate::libdeflate_static)
    set(PTTH_LIBDEFLATE_TARGET libdeflate::libdeflate_static)
  elseif(libdeflate_FOUND AND TARGET libdeflate::libdeflate_shared)
    set(PTTH_LIBDEFLATE_TARGET libdeflate::libdeflate_shared)
  else()
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(PTTH_PC_LIBDEFLATE QUIET IMPORTED_TARGET "libdeflate>=1.14")
      if(PTTH_PC_LIBDEFLATE_FOUND)
        set(PTTH_LIBDEFLATE_TARGET PkgConfig::PTTH_PC_LIBDEFLATE)
        set(libdeflate_VERSION "${PTTH_PC_LIBDEFLATE_VERSION}")
      endif()
    endif()
  endif()
  if(PTTH_LIBDEFLATE_TARGET)
    message(STATUS "ptth: using installed libdeflate ${libdeflate_VERSION}")
    set(PTTH_LIBDEFLATE_ORIGIN "installed")
    set(PTTH_LIBDEFLATE_VERSION "${libdeflate_VERSION}")
    return()
  endif()
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
                        "Install libdeflate >= 1.14, pass -DPTTH_LIBDEFLATE_TARBALL=<deflate-0.9.0.tar.gz> "
                        "or -DPTTH_USE_LIBDEFLATE=OFF.")
  endif()
endif()

set(_ptth_ldf_root "${CMAKE_BINARY_DIR}/_libdeflate")
set(_ptth_ldf_src "${_ptth_ldf_root}/deflate-0.9.0/libdeflate")
if(NOT EXISTS "${_ptth_ldf_src}/CMakeLists.txt")
  file(ARCHIVE_EXTRACT INPUT "${_ptth_ldf_archive}" DESTINATION "${_ptth_ldf_root}"
       PATTERNS "deflate-0.9.0/libdeflate/*")
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
