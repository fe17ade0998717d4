#include "core/writer.hpp"

#include <algorithm>
#include <cstring>

#include "core/kernels.hpp"

namespace ptth {

namespace {

constexpr size_t kConvertChunk = 1 << 15;  // elements per conversion step into a bounce buffer

size_t source_itemsize(const WriteRecord& r) {
  switch (r.convert) {
    case Convert::none: return itemsize(r.dtype);
    case Convert::f32_to_f16: return 4;
    case Convert::f64_to_f16:
    case Convert::f64_to_f32: return 8;
  }
  return 0;
}

uint64_t record_header_size(const WriteRecord& r) {
  return 4 + r.name.size() + 4 + 4 * r.dims.size() + 4 + 4;
}

void convert(const WriteRecord& r, const uint8_t* src, uint8_t* dst, size_t n) {
  const Kernels& k = kernels();
  switch (r.convert) {
    case Convert::none:
      std::memcpy(dst, src, n * itemsize(r.dtype));
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

void put_u32(ByteSink& out, uint32_t v) {
  uint8_t b[4];
  store_be32(b, v);
  out.put(b, 4);
}

class MemorySink : public ByteSink {
 public:
  MemorySink(uint8_t* p, uint64_t n) : p_(p), end_(p + n) {}
  void put(const uint8_t* p, size_t n) override {
    if (n > size_t(end_ - p_)) throw Error(Reason::bad_argument, "encoder overran its buffer");
    std::memcpy(p_, p, n);
    p_ += n;
  }
  uint8_t* direct(size_t n) override {
    if (n > size_t(end_ - p_)) throw Error(Reason::bad_argument, "encoder overran its buffer");
    return p_;
  }
  void advance(size_t n) override { p_ += n; }
  bool full() const { return p_ == end_; }

 private:
  uint8_t* p_;
  uint8_t* end_;
};

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

void encode(const std::vector<WriteRecord>& records, ByteSink& out) {
  uint8_t head[kHeaderSize];
  std::memcpy(head, kMagic, 4);
  store_be32(head + 4, kVersion);
  store_be32(head + 8, uint32_t(records.size()));
  out.put(head, kHeaderSize);
  std::vector<uint8_t> bounce;
  for (const WriteRecord& r : records) {
    put_u32(out, uint32_t(r.name.size()));
    out.put(reinterpret_cast<const uint8_t*>(r.name.data()), r.name.size());
    put_u32(out, uint32_t(r.dims.size()));
    for (uint64_t d : r.dims) put_u32(out, uint32_t(d));
    put_u32(out, uint32_t(r.dtype));
    const size_t out_item = itemsize(r.dtype);
    put_u32(out, uint32_t(r.numel * out_item));
    const auto* src = static_cast<const uint8_t*>(r.data);
    if (r.convert == Convert::none) {
      out.put(src, r.numel * out_item);
      continue;
    }
    const size_t in_item = source_itemsize(r);
    if (uint8_t* dst = out.direct(r.numel * out_item)) {
      convert(r, src, dst, r.numel);
      out.advance(r.numel * out_item);
      continue;
    }
    bounce.resize(kConvertChunk * out_item);
    for (uint64_t done = 0; done < r.numel;) {
      size_t n = size_t(std::min<uint64_t>(kConvertChunk, r.numel - done));
      convert(r, src + done * in_item, bounce.data(), n);
      out.put(bounce.data(), n * out_item);
      done += n;
    }
  }
}

void encode_to(const std::vector<WriteRecord>& records, uint8_t* dst, uint64_t blob_size) {
  MemorySink sink(dst, blob_size);
  encode(records, sink);
  if (!sink.full()) throw Error(Reason::bad_argument, "encoder wrote fewer bytes than it sized");
}

}  // namespace ptth
