#include "core/deflate.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include <zlib-ng.h>

namespace ptth {

namespace {

constexpr size_t kStage = size_t(1) << 16;
constexpr size_t kMaxStep = UINT32_MAX;  // zng_stream counts in 32 bits

int window_bits(Wrapper w) {
  switch (w) {
    case Wrapper::zlib: return 15;
    case Wrapper::gzip: return 31;
    case Wrapper::deflate: return -15;
    case Wrapper::none: break;
  }
  throw Error(Reason::bad_argument, "wrapper must be 'zlib', 'gzip' or 'deflate'");
}

}  // namespace

int check_level(long level) {
  if (level < 0 || level > 9)
    throw Error(Reason::bad_argument,
                "compression level must be 0..9, not " + std::to_string(level));
  return int(level);
}

DeflateSink::DeflateSink(int level, Wrapper w, uint64_t input_size) : strm_(new zng_stream_s()) {
  int32_t rc = zng_deflateInit2(strm_.get(), check_level(level), Z_DEFLATED, window_bits(w), 8,
                                Z_DEFAULT_STRATEGY);
  if (rc == Z_MEM_ERROR) throw std::bad_alloc();
  if (rc != Z_OK) throw Error(Reason::bad_argument, "zng_deflateInit2 failed");
  // deflateBound covers any single-call input; large inputs go in 32-bit steps,
  // so add a margin per step for the stored-block framing.
  uint64_t bound = zng_deflateBound(strm_.get(), (unsigned long)input_size);
  bound += 64 + 16 * (input_size / kMaxStep);
  out_.resize(size_t(bound));
  stage_.reserve(kStage);
}

DeflateSink::~DeflateSink() { zng_deflateEnd(strm_.get()); }

void DeflateSink::run(const uint8_t* p, size_t n, int flush) {
  zng_stream* s = strm_.get();
  if (flush == Z_FINISH) finished_ = true;
  do {
    size_t step = std::min(n, kMaxStep);
    s->next_in = p;
    s->avail_in = uint32_t(step);
    bool last = flush == Z_FINISH && step == n;
    while (true) {
      if (used_ == out_.size()) out_.resize(out_.size() + kStage);
      s->next_out = out_.data() + used_;
      s->avail_out = uint32_t(std::min(out_.size() - used_, kMaxStep));
      uint32_t before = s->avail_out;
      int32_t rc = zng_deflate(s, last ? Z_FINISH : Z_NO_FLUSH);
      used_ += before - s->avail_out;
      if (rc == Z_STREAM_END) break;
      if (rc != Z_OK && rc != Z_BUF_ERROR) throw Error(Reason::bad_argument, "zng_deflate failed");
      if (s->avail_in == 0 && s->avail_out > 0 && !last) break;
    }
    p += step;
    n -= step;
  } while (n > 0);
}

void DeflateSink::flush_stage() {
  if (stage_.empty()) return;
  run(stage_.data(), stage_.size(), Z_NO_FLUSH);
  stage_.clear();
}

void DeflateSink::put(const uint8_t* p, size_t n) {
  if (n < kStage - stage_.size()) {
    stage_.insert(stage_.end(), p, p + n);
    return;
  }
  flush_stage();
  run(p, n, Z_NO_FLUSH);
}

std::vector<uint8_t> DeflateSink::finish() {
  if (!finished_) run(stage_.data(), stage_.size(), Z_FINISH);
  stage_.clear();
  out_.resize(used_);
  return std::move(out_);
}

std::vector<uint8_t> deflate_all(const uint8_t* p, size_t n, int level, Wrapper w) {
  // One Z_FINISH call over the whole input, as zlib_ng.compress does it.
  DeflateSink sink(level, w, n);
  sink.run(p, n, Z_FINISH);
  return sink.finish();
}

}  // namespace ptth
