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

Inflater::~Inflater() {
  zng_inflateEnd(strm_.get());
}

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
  if (rc_ == Z_NEED_DICT)
    msg = "the stream needs a preset dictionary";
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
      uint8_t* grown =
          buffer_grow(out.get(), std::min(2 * cap, limit));  // moves or frees the old block
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
      throw Error(Reason::too_large,
                  "the decompressed data exceeds max_size (" + std::to_string(max_size) + " bytes)",
                  max_size, kNoRecord);
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

// ---- inflate_whole -----------------------------------------------------------

#ifdef PTTH_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif

namespace ptth {

namespace {

#ifdef PTTH_HAVE_LIBDEFLATE
struct FreeDecompressor {
  void operator()(libdeflate_decompressor* d) const noexcept { libdeflate_free_decompressor(d); }
};

// One decompressor per thread: allocating one costs more than a small inflate.
libdeflate_decompressor* thread_decompressor() {
  thread_local std::unique_ptr<libdeflate_decompressor, FreeDecompressor> d;
  if (!d) {
    d.reset(libdeflate_alloc_decompressor());
    if (!d) throw std::bad_alloc();
  }
  return d.get();
}
#endif

// Headers on which zlib-ng and libdeflate would disagree go the streaming way:
// a zlib window below 32 KiB (zlib-ng enforces it, libdeflate does not) and a
// gzip header CRC (zlib-ng checks it, libdeflate skips it).
bool header_suits_whole(const uint8_t* p, size_t n, Wrapper w) {
  if (w == Wrapper::zlib) return n >= 2 && (p[0] >> 4) == 7;
  if (w == Wrapper::gzip) return n >= 4 && (p[3] & 0x02) == 0;
  return true;
}

}  // namespace

const char* inflate_engine() noexcept {
#ifdef PTTH_HAVE_LIBDEFLATE
  return "libdeflate";
#else
  return "";
#endif
}

const char* libdeflate_version() noexcept {
#ifdef PTTH_HAVE_LIBDEFLATE
  return LIBDEFLATE_VERSION_STRING;
#else
  return "";
#endif
}

const char* libdeflate_origin() noexcept {
  return PTTH_LIBDEFLATE_ORIGIN;
}

namespace {

// Keeps nothing: the bomb check only asks whether a prefix breaks a rule.
class DiscardSink : public RecordSink {
 public:
  uint8_t* payload_space(const RecordInfo&, uint64_t, size_t* room) override {
    *room = sizeof scratch_;  // only for a payload cut by the prefix's end: never kept
    return scratch_;
  }
  void on_record(const RecordInfo&, const uint8_t*) override {}

 private:
  uint8_t scratch_[4096];
};

// Whether the blob prefix [p, p+n) may still grow into a blob of at most
// max_size bytes: false when the reader rejects it (a bomb's record that
// claims more than max_size fails here at once).
bool prefix_may_fit(const uint8_t* p, size_t n, uint64_t max_size) {
  ReadOptions opts;
  opts.max_size = max_size;
  DiscardSink sink;
  Reader reader(opts, &sink);
  try {
    reader.feed(p, n, /*borrow=*/true);
  } catch (const Error& e) {
    return e.reason() == Reason::truncated && e.offset() == n;  // cut by the prefix's end
  }
  return true;
}

#ifdef PTTH_HAVE_LIBDEFLATE
libdeflate_result libdeflate_run(Wrapper w, const uint8_t* p, size_t n, uint8_t* out, size_t room,
                                 size_t* in_used, size_t* produced) {
  libdeflate_decompressor* d = thread_decompressor();
  switch (w) {
    case Wrapper::zlib: return libdeflate_zlib_decompress_ex(d, p, n, out, room, in_used, produced);
    case Wrapper::gzip: return libdeflate_gzip_decompress_ex(d, p, n, out, room, in_used, produced);
    default: return libdeflate_deflate_decompress_ex(d, p, n, out, room, in_used, produced);
  }
}
#endif

bool whole(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, bool blob, Buffer* out,
           uint64_t* out_size) {
#ifdef PTTH_HAVE_LIBDEFLATE
  if (w == Wrapper::none || !header_suits_whole(p, n, w)) return false;
  // DEFLATE expands at most 1032:1 (a 258-byte match in 2 bits), so the input
  // bounds the output as well as max_size does.
  const uint64_t most = std::min(max_size, uint64_t(n) * 1032 + 1024);
  if (most > uint64_t(SIZE_MAX) / 2) return false;
  // The first try decodes into an ordinary buffer of 8x the input, which the
  // pool hands back for the next upload of that size (no fresh pages per
  // add); a stream that outgrows it is decoded again into a reservation of
  // the most it may reach. libdeflate cannot resume, so each retry costs at
  // most 8/7 of the work, and a blob prefix is checked in between, so a bomb
  // stops at its first oversized record.
  uint64_t room = std::min(most, uint64_t(n) * 8 + (uint64_t(64) << 10));
  Buffer buf;
  try {
    buf = Buffer(buffer_alloc(room));
  } catch (const std::bad_alloc&) {
    return false;
  }
  bool reserved = false;
  while (true) {
    size_t in_used = 0, produced = 0;
    libdeflate_result r = libdeflate_run(w, p, n, buf.get(), size_t(room), &in_used, &produced);
    if (r == LIBDEFLATE_SUCCESS) {
      if (in_used != n) return false;  // trailing bytes
      if (reserved) buffer_trim(buf.get(), produced);
      *out = std::move(buf);
      *out_size = produced;
      return true;
    }
    if (r != LIBDEFLATE_INSUFFICIENT_SPACE || room == most) return false;
    if (blob && !prefix_may_fit(buf.get(), size_t(room), max_size)) return false;
    room = std::min(most, room * 8);
    if (!reserved) {
      buf = Buffer(buffer_reserve(most));
      if (!buf) return false;
      reserved = true;
    }
  }
#else
  (void)p, (void)n, (void)w, (void)max_size, (void)blob, (void)out, (void)out_size;
  return false;
#endif
}

}  // namespace

bool inflate_whole(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, Buffer* out,
                   uint64_t* out_size) {
  return whole(p, n, w, max_size, false, out, out_size);
}

bool inflate_blob_whole(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, Buffer* out,
                        uint64_t* out_size) {
  return whole(p, n, w, max_size, true, out, out_size);
}

}  // namespace ptth
