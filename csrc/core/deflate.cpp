#include "core/deflate.hpp"

#include <algorithm>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include <zlib-ng.h>

namespace ptth {

namespace {

constexpr size_t kMaxStep = UINT32_MAX;  // zng_stream counts in 32 bits
constexpr size_t kFirstOutput = 16 * 1024;

struct DeflateEnd {
  void operator()(zng_stream* s) const noexcept {
    zng_deflateEnd(s);
    delete s;
  }
};

}  // namespace

int check_level(long level) {
  if (level < 0 || level > 9)
    throw std::invalid_argument("compression level must be 0..9, not " + std::to_string(level));
  return int(level);
}

std::vector<uint8_t> deflate_all(const uint8_t* p, size_t n, int level, Wrapper w) {
  const int bits = window_bits(w);
  check_level(level);
  std::unique_ptr<zng_stream, DeflateEnd> s(new zng_stream());
  int32_t rc = zng_deflateInit2(s.get(), level, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) {
    s.release();
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    throw std::runtime_error("zng_deflateInit2 failed");
  }
  std::vector<uint8_t> out(kFirstOutput);
  size_t used = 0;
  int32_t flush;
  do {
    size_t step = std::min(n, kMaxStep);
    s->next_in = p;
    s->avail_in = uint32_t(step);
    p += step;
    n -= step;
    flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
    do {
      if (used == out.size()) out.resize(out.size() * 2);
      s->next_out = out.data() + used;
      s->avail_out = uint32_t(std::min(out.size() - used, kMaxStep));
      uint32_t before = s->avail_out;
      rc = zng_deflate(s.get(), flush);
      used += before - s->avail_out;
      if (rc == Z_STREAM_ERROR) throw std::runtime_error("zng_deflate failed");
    } while (s->avail_out == 0);
  } while (flush != Z_FINISH);
  out.resize(used);
  return out;
}

}  // namespace ptth
