#include "core/format.hpp"

#include <zlib-ng.h>

namespace ptth {

const char* reason_name(Reason r) noexcept {
  switch (r) {
#define PTTH_REASON_NAME(name, text) \
  case Reason::name: return #name;
    PTTH_REASONS(PTTH_REASON_NAME)
#undef PTTH_REASON_NAME
  }
  return "unknown";
}

const char* reason_text(Reason r) noexcept {
  switch (r) {
#define PTTH_REASON_TEXT(name, text) \
  case Reason::name: return text;
    PTTH_REASONS(PTTH_REASON_TEXT)
#undef PTTH_REASON_TEXT
  }
  return "unknown";
}

size_t itemsize(DType d) noexcept {
  switch (d) {
    case DType::float32: return 4;
    case DType::float64: return 8;
    case DType::int32: return 4;
    case DType::float16: return 2;
  }
  return 0;
}

const char* dtype_name(DType d) noexcept {
  switch (d) {
    case DType::float32: return "float32";
    case DType::float64: return "float64";
    case DType::int32: return "int32";
    case DType::float16: return "float16";
  }
  return "?";
}

bool checked_numel(const uint32_t* dims, size_t ndim, uint64_t* numel) noexcept {
  uint64_t n = 1;
  bool overflow = false;
  for (size_t i = 0; i < ndim; ++i) {
    if (dims[i] == 0) {
      *numel = 0;
      return true;
    }
    if (!overflow && !checked_mul(n, dims[i], &n)) overflow = true;
  }
  *numel = n;
  return !overflow;
}

bool numpy_can_shape(const uint32_t* dims, size_t ndim, size_t itemsize) noexcept {
  uint64_t size = itemsize;
  for (size_t i = 0; i < ndim; ++i)
    if (dims[i] != 0 && !checked_mul(size, dims[i], &size)) return false;
  return size <= uint64_t(INT64_MAX);
}

bool valid_utf8(const uint8_t* p, size_t n) noexcept {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0)
        lo = 0xA0;  // no overlongs
      else if (c == 0xED)
        hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0)
        lo = 0x90;  // no overlongs
      else if (c == 0xF4)
        hi = 0x8F;  // nothing above U+10FFFF
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

const char* compiler_id() noexcept {
  return PTTH_COMPILER;
}
const char* zlib_ng_version() noexcept {
  return ::zlibng_version();
}
const char* zlib_ng_origin() noexcept {
  return PTTH_ZLIBNG_ORIGIN;
}

}  // namespace ptth
