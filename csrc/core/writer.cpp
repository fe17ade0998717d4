#include "core/writer.hpp"

#include <algorithm>
#include <cstring>

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

uint8_t* put_u32(uint8_t* p, uint32_t v) {
  store_be32(p, v);
  return p + 4;
}

}  // namespace

uint64_t validate(const std::vector<WriteRecord>& records) {
  if (records.size() > UINT32_MAX) throw Error(Reason::bad_argument, "more than 2**32-1 records");
  uint64_t total = kHeaderSize;
  for (const WriteRecord& r : records) {
    const std::string where = "parameter '" + r.name + "': ";
    if (r.name.size() > UINT32_MAX) throw Error(Reason::bad_argument, where + "name too long");
    if (!valid_utf8(reinterpret_cast<const uint8_t*>(r.name.data()), r.name.size()))
      throw Error(Reason::bad_name, where + "name is not valid UTF-8");
    if (r.dims.size() > kMaxDims) throw Error(Reason::bad_argument, where + "more than 64 dims");
    for (uint64_t d : r.dims)
      if (d > UINT32_MAX) throw Error(Reason::bad_argument, where + "a dim does not fit in 32 bits");
    uint64_t nbytes;
    if (!checked_mul(r.numel, itemsize(r.dtype), &nbytes) || nbytes > UINT32_MAX)
      throw Error(Reason::bad_argument, where + "payload larger than 4 GiB - 1 bytes");
    total += record_header_size(r) + nbytes;
  }
  return total;
}

void encode_to(const std::vector<WriteRecord>& records, uint8_t* dst, uint64_t blob_size) {
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
    p += nbytes;
  }
  if (uint64_t(p - dst) != blob_size)
    throw Error(Reason::bad_argument, "encoder wrote a different size than it validated");
}

}  // namespace ptth
