# ISA-L (igzip) for ptth_core's deflate at levels 1..9.
#
# The fallback engine compresses through the `isal` Python package, so the
# core must run the very ISA-L version that package carries (2.32.1 in
# isal 1.9.1) for both engines to write the same bytes:
# 1. An installed ISA-L of exactly that version found by CMake is preferred.
# 2. Otherwise the ISA-L tree inside the `isal` 1.9.1 source distribution on
#    PyPI (src/isal/isa-l), checked against its SHA-256, cached under
#    build/downloads/ and built as a static library.
#    PTTH_ISAL_TARBALL names a local copy of that archive for offline builds.
# ISA-L needs nasm on x86-64; without it, or on a CPU ISA-L does not support,
# configure still succeeds and deflate uses zlib-ng (build_info() says so).
#
# Sets PTTH_ISAL_TARGET, PTTH_ISAL_ORIGIN ("installed", "bundled-build" or
# "off: <why>") and PTTH_ISAL_VERSION.

set(PTTH_ISAL_VERSION_WANTED "2.32.1")
set(PTTH_ISAL_SDIST_URL
  "https://files.pythonhosted.org/packages/16/43/6cf9c6b2e80f02fb7bd809ab91496cc4bd1f9145bd3a5a312a91d76af8be/isal-1.9.1.tar.gz")
set(PTTH_ISAL_SDIST_SHA256 "d210dca02a689ef2af709d2c62d2daac2e36b5d2fa06e6dc0d023c83fee77e91")
set(PTTH_ISAL_TARBALL "" CACHE FILEPATH "Local copy of isal-1.9.1.tar.gz (ISA-L 2.32.1 sources)")
option(PTTH_USE_ISAL "Deflate with ISA-L (needs nasm on x86-64)" ON)
option(PTTH_USE_INSTALLED_ISAL "Use an installed ISA-L ${PTTH_ISAL_VERSION_WANTED} when CMake finds one" ON)

set(PTTH_ISAL_TARGET "")
set(PTTH_ISAL_VERSION "")

if(NOT PTTH_USE_ISAL)
  set(PTTH_ISAL_ORIGIN "off: disabled by PTTH_USE_ISAL=OFF")
  message(STATUS "ptth: ISA-L disabled; deflate uses zlib-ng")
  return()
endif()

string(TOLOWER "${CMAKE_SYSTEM_PROCESSOR}" _ptth_isal_cpu)
if(_ptth_isal_cpu MATCHES "^(x86_64|amd64)$")
  set(_ptth_isal_x86 ON)
elseif(_ptth_isal_cpu MATCHES "^(aarch64|arm64)$")
  set(_ptth_isal_x86 OFF)
else()
  set(PTTH_ISAL_ORIGIN "off: ISA-L does not support ${CMAKE_SYSTEM_PROCESSOR} here")
  message(STATUS "ptth: ${PTTH_ISAL_ORIGIN}; deflate uses zlib-ng")
  return()
endif()

if(PTTH_USE_INSTALLED_ISAL)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(PTTH_PC_ISAL QUIET IMPORTED_TARGET "libisal=${PTTH_ISAL_VERSION_WANTED}")
    if(PTTH_PC_ISAL_FOUND)
      message(STATUS "ptth: using installed ISA-L ${PTTH_PC_ISAL_VERSION}")
      set(PTTH_ISAL_TARGET PkgConfig::PTTH_PC_ISAL)
      set(PTTH_ISAL_ORIGIN "installed")
      set(PTTH_ISAL_VERSION "${PTTH_PC_ISAL_VERSION}")
      return()
    endif()
  endif()
endif()

if(_ptth_isal_x86)
  find_program(PTTH_NASM NAMES nasm)
  if(NOT PTTH_NASM)
    set(PTTH_ISAL_ORIGIN "off: nasm not found (apt-get install nasm)")
    message(STATUS "ptth: ${PTTH_ISAL_ORIGIN}; deflate uses zlib-ng")
    return()
  endif()
  set(CMAKE_ASM_NASM_COMPILER "${PTTH_NASM}")
endif()

if(PTTH_ISAL_TARBALL)
  set(_ptth_isal_archive "${PTTH_ISAL_TARBALL}")
elseif(DEFINED ENV{PTTH_ISAL_TARBALL} AND EXISTS "$ENV{PTTH_ISAL_TARBALL}")
  set(_ptth_isal_archive "$ENV{PTTH_ISAL_TARBALL}")
else()
  set(_ptth_isal_archive "${CMAKE_CURRENT_LIST_DIR}/../build/downloads/isal-1.9.1.tar.gz")
endif()

if(EXISTS "${_ptth_isal_archive}")
  file(SHA256 "${_ptth_isal_archive}" _ptth_isal_hash)
  if(NOT _ptth_isal_hash STREQUAL PTTH_ISAL_SDIST_SHA256)
    message(STATUS "ptth: ${_ptth_isal_archive} has the wrong SHA-256; fetching again")
    file(REMOVE "${_ptth_isal_archive}")
  endif()
endif()
if(NOT EXISTS "${_ptth_isal_archive}")
  message(STATUS "ptth: fetching ISA-L 2.32.1 sources (isal-1.9.1 sdist)")
  file(DOWNLOAD "${PTTH_ISAL_SDIST_URL}" "${_ptth_isal_archive}"
       EXPECTED_HASH SHA256=${PTTH_ISAL_SDIST_SHA256}
       TLS_VERIFY ON STATUS _ptth_isal_status)
  list(GET _ptth_isal_status 0 _ptth_isal_rc)
  if(NOT _ptth_isal_rc EQUAL 0)
    file(REMOVE "${_ptth_isal_archive}")
    message(FATAL_ERROR "ptth: could not fetch ISA-L sources: ${_ptth_isal_status}. "
                        "Pass -DPTTH_ISAL_TARBALL=<isal-1.9.1.tar.gz> or -DPTTH_USE_ISAL=OFF.")
  endif()
endif()

set(_ptth_isal_root "${CMAKE_BINARY_DIR}/_isal")
set(_ptth_isal_src "${_ptth_isal_root}/isal-1.9.1/src/isal/isa-l")
if(NOT EXISTS "${_ptth_isal_src}/CMakeLists.txt")
  file(ARCHIVE_EXTRACT INPUT "${_ptth_isal_archive}" DESTINATION "${_ptth_isal_root}"
       PATTERNS "isal-1.9.1/src/isal/isa-l/*")
endif()

# Function scope keeps these settings away from ptth's own options.
function(_ptth_add_isal src bin)
  set(CMAKE_POLICY_DEFAULT_CMP0077 NEW)  # options keep the values set here
  set(BUILD_SHARED_LIBS OFF)
  set(ISAL_BUILD_TESTS OFF)
  set(ISAL_BUILD_PERF_TESTS OFF)
  set(ISAL_BUILD_FUZZ_TESTS OFF)
  set(ISAL_BUILD_ISAL_SHIM OFF)
  set(ISAL_BUILD_IGZIP_CLI OFF)
  add_subdirectory("${src}" "${bin}" EXCLUDE_FROM_ALL)
  # ISA-L exports only its generated umbrella header; ptth includes igzip_lib.h.
  target_include_directories(isal INTERFACE "$<BUILD_INTERFACE:${src}/include>")
endfunction()
_ptth_add_isal("${_ptth_isal_src}" "${CMAKE_BINARY_DIR}/_isal-build")

set(PTTH_ISAL_TARGET isal)
set(PTTH_ISAL_ORIGIN "bundled-build")
set(PTTH_ISAL_VERSION "${PTTH_ISAL_VERSION_WANTED}")
