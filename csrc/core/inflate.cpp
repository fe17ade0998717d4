#include "core/inflate.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include <zlib-ng.h>

namespace ptth {

namespace {

constexpr size_t kMaxStep = UINT32_MAX;  // zng_stream counts in 32 bits

}  // namespace

int window_bits(Wrapper w) {
  switch (w) {
    case Wrapper::zlib: return 15;
    case Wrapper::gzip: return 31;
    case Wrapper::deflate: return -15;
    case Wrapper::none: break;
  }
  throw std::invalid_argument("wrapper must be 'zlib', 'gzip' or 'deflate'");
}

const char* wrapper_name(Wrapper w) noexcept {
  switch (w) {
    case Wrapper::none: return "none";
    case Wrapper::zlib: return "zlib";
    case Wrapper::gzip: return "gzip";
    case Wrapper::deflate: return "deflate";
  }
  return "?";
}

Wrapper parse_wrapper(const char* name) {
  for (Wrapper w : {Wrapper::none, Wrapper::zlib, Wrapper::gzip, Wrapper::deflate})
    if (std::strcmp(name, wrapper_name(w)) == 0) return w;
  throw std::invalid_argument(std::string("wrapper must be 'zlib', 'gzip' or 'deflate', not '") +
                              name + "'");
}

Wrapper detect_wrapper(const uint8_t* p, size_t n) noexcept {
  if (n == 0 || std::memcmp(p, kMagic, std::min<size_t>(n, 4)) == 0) return Wrapper::none;
  if (n >= 2 && (p[0] & 0x0F) == 8 && (p[0] >> 4) <= 7 && ((p[0] << 8) | p[1]) % 31 == 0)
    return Wrapper::zlib;
  if (n >= 3 && p[0] == 0x1F && p[1] == 0x8B && p[2] == 0x08) return Wrapper::gzip;
  return Wrapper::deflate;
}

// ---- Inflater --------------------------------------------------------------

Inflater::Inflater(Wrapper w) : strm_(new zng_stream_s()) {
  int32_t rc = zng_inflateInit2(strm_.get(), window_bits(w));
  if (rc == Z_MEM_ERROR) throw std::bad_alloc();
  if (rc != Z_OK) throw std::runtime_error("zng_inflateInit2 failed");
}

Inflater::~Inflater() { zng_inflateEnd(strm_.get()); }

Inflater::Step Inflater::run(const uint8_t* in, size_t in_n, uint8_t* out, size_t out_n) {
  zng_stream* s = strm_.get();
  s->next_in = in;
  s->avail_in = uint32_t(std::min(in_n, kMaxStep));
  s->next_out = out;
  s->avail_out = uint32_t(std::min(out_n, kMaxStep));
  const uint32_t in0 = s->avail_in, out0 = s->avail_out;
  rc_ = zng_inflate(s, Z_NO_FLUSH);
  if (rc_ == Z_MEM_ERROR) throw std::bad_alloc();
  if (rc_ == Z_STREAM_END) ended_ = true;
  bool failed = !(rc_ == Z_OK || rc_ == Z_STREAM_END || rc_ == Z_BUF_ERROR);
  return Step{size_t(in0 - s->avail_in), size_t(out0 - s->avail_out), failed};
}

void Inflater::raise(uint64_t offset, int64_t record) const {
  const char* msg = strm_->msg ? strm_->msg : "invalid compressed data";
  Reason r = Reason::stream_corrupt;
  if (rc_ == Z_NEED_DICT) msg = "the stream needs a preset dictionary";
  else if (std::strstr(msg, "incorrect data check") || std::strstr(msg, "incorrect length check"))
    r = Reason::bad_checksum;
  throw Error(r, msg, offset, record);
}

// ---- inflate_all -------------------------------------------------------------

std::pair<Buffer, uint64_t> inflate_all(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size) {
  if (w == Wrapper::none) {
    if (n > max_size)
      throw Error(Reason::too_large, "the data exceeds max_size", max_size, kNoRecord);
    Buffer out(buffer_alloc(n));
    if (n) std::memcpy(out.get(), p, n);
    return {std::move(out), n};
  }
  // One byte past the limit tells an exact fit from an overflow.
  const uint64_t limit = max_size == UINT64_MAX ? max_size : max_size + 1;
  Inflater inf(w);
  Buffer out(buffer_alloc(std::min<uint64_t>(std::max<uint64_t>(uint64_t(n) * 2, 1 << 16), limit)));
  uint64_t used = 0;
  while (true) {
    uint64_t cap = std::min(buffer_capacity(out.get()), limit);
    if (used == cap) {
      uint8_t* grown = buffer_grow(out.get(), std::min(2 * cap, limit));  // moves or frees the old block
      (void)out.release();
      out.reset(grown);
      cap = std::min(buffer_capacity(out.get()), limit);
    }
    Inflater::Step step = inf.run(p, n, out.get() + used, size_t(cap - used));
    p += step.consumed;
    n -= step.consumed;
    used += step.produced;
    // Output past the limit came before the error that stopped the step.
    if (used > max_size)
      throw Error(Reason::too_large, "the decompressed data exceeds max_size (" +
                  std::to_string(max_size) + " bytes)", max_size, kNoRecord);
    if (step.failed) inf.raise(used);
    if (inf.ended()) break;
    if (n == 0 && used < cap)
      throw Error(Reason::stream_truncated, "the compressed stream ends before its end marker",
                  used, kNoRecord);
  }
  if (n > 0)
    throw Error(Reason::stream_trailing,
                std::to_string(n) + " bytes follow the end of the compressed stream", used,
                kNoRecord);
  return {std::move(out), used};
}

}  // namespace ptth
