#include "core/stream_decoder.hpp"

#include <algorithm>
#include <cstring>
#include <string>

namespace ptth {

namespace {

std::string describe_start(const uint8_t* p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  std::string bytes, text;
  for (size_t i = 0; i < n; ++i) {
    if (i) bytes += ' ';
    bytes += hex[p[i] >> 4];
    bytes += hex[p[i] & 15];
    text += (p[i] >= 0x20 && p[i] < 0x7f) ? char(p[i]) : '.';
  }
  return n ? bytes + " (\"" + text + "\")" : std::string("nothing");
}

}  // namespace

StreamDecoder::StreamDecoder(const ReadOptions& opts, RecordSink* sink) : reader_(opts, sink) {}
StreamDecoder::~StreamDecoder() = default;

void StreamDecoder::not_ptth() const {
  throw Error(Reason::not_ptth,
              "the input starts with " + describe_start(first_, first_n_) +
                  ": it is neither a PTTH blob nor a zlib, gzip or raw DEFLATE stream of one",
              0, kNoRecord);
}

template <typename F>
void StreamDecoder::guarded(F f) {
  // Input that matched no known start was taken for raw DEFLATE: if it fails
  // before yielding the magic, it was not a stream of a PTTH blob at all.
  if (wrapper_ != Wrapper::deflate) return f();
  try {
    f();
  } catch (const Error&) {
    if (reader_.position() >= 4) throw;
    not_ptth();
  }
}

void StreamDecoder::decide(bool final) {
  if (known_ || (head_n_ < 4 && !final)) return;
  wrapper_ = detect_wrapper(head_, head_n_);
  known_ = true;
  std::memcpy(first_, head_, head_n_);
  first_n_ = head_n_;
  if (wrapper_ != Wrapper::none) inflater_ = std::make_unique<Inflater>(wrapper_);
  size_t n = head_n_;
  head_n_ = 0;
  dispatch(head_, n, false);
}

void StreamDecoder::feed(const uint8_t* p, size_t n, bool borrow) {
  if (!known_) {
    size_t k = std::min(n, 4 - head_n_);
    if (k) std::memcpy(head_ + head_n_, p, k);  // p may be null when n is 0
    head_n_ += k;
    p += k;
    n -= k;
    if (head_n_ < 4) return;
    // Detection bytes go through the reader first; they never hold a payload.
    decide(false);
  }
  dispatch(p, n, borrow);
}

void StreamDecoder::dispatch(const uint8_t* p, size_t n, bool borrow) {
  if (wrapper_ == Wrapper::none) {
    reader_.feed(p, n, borrow);
    return;
  }
  guarded([&] { inflate(p, n); });
}

void StreamDecoder::inflate(const uint8_t* p, size_t n) {
  while (true) {
    if (inflater_->ended()) {
      // The stream is over: the blob must be complete before anything else.
      reader_.finish();
      if (n > 0)
        throw Error(Reason::stream_trailing,
                    std::to_string(n) + " bytes follow the end of the compressed stream",
                    reader_.position(), kNoRecord);
      return;
    }
    Reader::Want w = reader_.want();
    Inflater::Step step = inflater_->run(p, n, w.dst, w.n);
    p += step.consumed;
    n -= step.consumed;
    // Bytes inflated before an error are parsed first: a rule they break wins.
    reader_.commit(step.produced);
    if (step.failed) inflater_->raise(reader_.position(), reader_.current_record());
    if (inflater_->ended()) continue;
    if (n == 0 && step.produced < w.n) return;  // all input used, nothing pending
    if (step.consumed == 0 && step.produced == 0) return;
  }
}

void StreamDecoder::finish() {
  decide(true);
  guarded([&] {
    if (wrapper_ != Wrapper::none && !inflater_->ended())
      throw Error(Reason::stream_truncated, "the compressed stream ends before its end marker",
                  reader_.position(), reader_.current_record());
    reader_.finish();
  });
}

}  // namespace ptth
