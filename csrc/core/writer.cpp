#include "core/writer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/kernels.hpp"

namespace ptth {

namespace {

uint64_t record_header_size(const WriteRecord& r) {
  return 4 + r.name.size() + 4 + 4 * r.dims.size() + 4 + 4;
}

void convert(const WriteRecord& r, const uint8_t* src, uint8_t* dst, size_t n) {
  const Kernels& k = kernels();
  switch (r.convert) {
    case Convert::none:
      if (n) std::memcpy(dst, src, n * itemsize(r.dtype));
      break;
    case Convert::f32_to_f16:
      k.f32_to_f16(reinterpret_cast<const float*>(src), reinterpret_cast<uint16_t*>(dst), n);
      break;
    case Convert::f64_to_f16:
      k.f64_to_f16(reinterpret_cast<const double*>(src), reinterpret_cast<uint16_t*>(dst), n);
      break;
    case Convert::f64_to_f32:
      for (size_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        float f = static_cast<float>(d);
        std::memcpy(dst + 4 * i, &f, 4);
      }
      break;
  }
}

// After a narrowing conversion: finite inputs that came out infinite.
template <typename S>
bool source_finite(const uint8_t* src, size_t i) {
  S v;
  std::memcpy(&v, src + sizeof(S) * i, sizeof(S));
  return std::isfinite(v);
}

void check_overflow(const WriteRecord& r, const uint8_t* src, uint8_t* dst, size_t n,
                    bool saturate) {
  if (r.convert == Convert::none) return;
  const Kernels& k = kernels();
  const bool to_half = r.convert != Convert::f64_to_f32;
  if (to_half ? k.all_finite_f16(reinterpret_cast<const uint16_t*>(dst), n)
              : k.all_finite_f32(reinterpret_cast<const float*>(dst), n))
    return;  // the common case: one fast scan
  for (size_t i = 0; i < n; ++i) {
    const bool in_finite = r.convert == Convert::f32_to_f16 ? source_finite<float>(src, i)
                                                            : source_finite<double>(src, i);
    if (!in_finite) continue;  // inf and NaN stay what they were
    if (to_half) {
      uint16_t h;
      std::memcpy(&h, dst + 2 * i, 2);
      if ((h & 0x7FFF) != 0x7C00) continue;
      h = uint16_t((h & 0x8000) | 0x7BFF);  // +-65504
      if (saturate) std::memcpy(dst + 2 * i, &h, 2);
    } else {
      float f;
      std::memcpy(&f, dst + 4 * i, 4);
      if (!std::isinf(f)) continue;
      f = std::copysign(std::numeric_limits<float>::max(), f);
      if (saturate) std::memcpy(dst + 4 * i, &f, 4);
    }
    if (!saturate)
      throw Error(Reason::overflow,
                  "tensor '" + r.name + "': element " + std::to_string(i) + " does not fit " +
                      (to_half ? "float16" : "float32") + " (pass saturate=True to clip it)",
                  kNoOffset, kNoRecord, r.name, true);
  }
}

uint8_t* put_u32(uint8_t* p, uint32_t v) {
  store_be32(p, v);
  return p + 4;
}

}  // namespace

uint64_t validate(const std::vector<WriteRecord>& records) {
  if (records.size() > UINT32_MAX)
    throw Error(Reason::not_representable, "more than 2**32-1 records");
  uint64_t total = kHeaderSize;
  for (const WriteRecord& r : records) {
    auto fail = [&](Reason reason, const std::string& what) {
      throw Error(reason, "parameter '" + r.name + "': " + what, kNoOffset, kNoRecord, r.name,
                  true);
    };
    if (!valid_utf8(reinterpret_cast<const uint8_t*>(r.name.data()), r.name.size()))
      fail(Reason::bad_name, "the name is not valid UTF-8");
    if (r.name.size() > UINT32_MAX)
      fail(Reason::not_representable, "the name is longer than 2**32-1 bytes");
    if (r.dims.size() > kMaxDims) fail(Reason::not_representable, "more than 64 dims");
    for (uint64_t d : r.dims)
      if (d > UINT32_MAX) fail(Reason::not_representable, "a dim does not fit in 32 bits");
    uint64_t nbytes;
    if (!checked_mul(r.numel, itemsize(r.dtype), &nbytes) || nbytes > UINT32_MAX)
      fail(Reason::not_representable, "its payload is larger than 4 GiB - 1 bytes");
    total += record_header_size(r) + nbytes;
  }
  return total;
}

void encode_to(const std::vector<WriteRecord>& records, uint8_t* dst, uint64_t blob_size,
               bool saturate) {
  uint8_t* p = dst;
  std::memcpy(p, kMagic, 4);
  p = put_u32(p + 4, kVersion);
  p = put_u32(p, uint32_t(records.size()));
  for (const WriteRecord& r : records) {
    p = put_u32(p, uint32_t(r.name.size()));
    if (!r.name.empty()) std::memcpy(p, r.name.data(), r.name.size());
    p += r.name.size();
    p = put_u32(p, uint32_t(r.dims.size()));
    for (uint64_t d : r.dims) p = put_u32(p, uint32_t(d));
    p = put_u32(p, uint32_t(r.dtype));
    const uint64_t nbytes = r.numel * itemsize(r.dtype);
    p = put_u32(p, uint32_t(nbytes));
    convert(r, static_cast<const uint8_t*>(r.data), p, r.numel);
    check_overflow(r, static_cast<const uint8_t*>(r.data), p, r.numel, saturate);
    p += nbytes;
  }
  if (uint64_t(p - dst) != blob_size)
    throw std::logic_error("encoder wrote a different size than it validated");
}

}  // namespace ptth
