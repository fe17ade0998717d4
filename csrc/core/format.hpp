// PTTH v1 constants, the dtype table and checked helpers (docs/format.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/errors.hpp"

namespace ptth {

constexpr uint8_t kMagic[4] = {'P', 'T', 'T', 'H'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxDims = 64;
constexpr size_t kHeaderSize = 12;
constexpr uint64_t kDefaultMaxSize = uint64_t(512) << 20;

enum class DType : uint32_t { float32 = 0, float64 = 1, int32 = 2, float16 = 3 };

inline bool valid_code(uint32_t code) noexcept {
  return code <= 3;
}
size_t itemsize(DType d) noexcept;
const char* dtype_name(DType d) noexcept;

inline uint32_t load_be32(const uint8_t* p) noexcept {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
inline void store_be32(uint8_t* p, uint32_t v) noexcept {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}

// numel of a shape: 1 for no dims, 0 if any dim is 0; false if the product
// does not fit in 64 bits (and no dim is 0).
bool checked_numel(const uint32_t* dims, size_t ndim, uint64_t* numel) noexcept;
// The product of the non-zero dims times itemsize fits in 2**63-1 (NumPy's limit).
bool numpy_can_shape(const uint32_t* dims, size_t ndim, size_t itemsize) noexcept;
inline bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) noexcept {
  return !__builtin_mul_overflow(a, b, out);
}

// Strict UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF),
// the same set Python's "utf-8" codec accepts.
bool valid_utf8(const uint8_t* p, size_t n) noexcept;

// Compiler and zlib-ng facts for build_info().
const char* compiler_id() noexcept;
const char* zlib_ng_version() noexcept;
const char* zlib_ng_origin() noexcept;

}  // namespace ptth
