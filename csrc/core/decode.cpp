#include "core/decode.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace ptth {

Buffer inflate_blob(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, uint64_t* size) {
  Buffer whole;
  if (w == Wrapper::none || !inflate_blob_whole(p, n, w, max_size, &whole, size)) return Buffer();
  if (*size < 4 || std::memcmp(whole.get(), kMagic, 4) != 0) return Buffer();
  return whole;
}

Decoded decode(const uint8_t* p, size_t n, const ReadOptions& opts, bool copy) {
  Decoded out;
  out.wrapper = detect_wrapper(p, std::min<size_t>(n, 4));
  ReadOptions o = opts;
  if (out.wrapper == Wrapper::none) o.max_size = UINT64_MAX;  // bounded by the input
  uint64_t size = 0;
  if (Buffer whole = inflate_blob(p, n, out.wrapper, opts.max_size, &size)) {
    try {
      // Owned, aligned copies out of the inflated blob (the arrays promise alignment).
      CollectingSink sink(true);
      StreamDecoder dec(o, &sink);
      dec.feed(whole.get(), size_t(size), /*borrow=*/true);
      dec.finish();
      out.records = std::move(sink.records());
      return out;
    } catch (const Error&) {
      // the streaming path below reports it exactly
    }
  }
  CollectingSink sink(copy || out.wrapper != Wrapper::none);
  StreamDecoder dec(o, &sink);
  dec.feed(p, n, /*borrow=*/true);
  dec.finish();
  out.records = std::move(sink.records());
  return out;
}

Decoder::Decoder(const ReadOptions& opts)
    : opts_(opts),
      sink_(true, opts.prealloc),
      dec_(std::make_unique<StreamDecoder>(opts_, &sink_)) {}

void Decoder::check_open() const {
  if (state_ == State::closed) throw Error(Reason::closed, "the decoder is closed");
  if (state_ == State::failed)
    throw Error(Reason::closed, "the decoder stopped at an earlier error");
}

template <typename F>
void Decoder::run(F f) {
  try {
    f();
  } catch (...) {
    state_ = State::failed;
    sink_.records().clear();
    throw;
  }
}

std::vector<CollectedRecord> Decoder::feed(const uint8_t* p, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  check_open();
  run([&] { dec_->feed(p, n); });
  std::vector<CollectedRecord> done;
  done.swap(sink_.records());
  return done;
}

void Decoder::close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::closed) return;
  check_open();
  run([&] { dec_->finish(); });
  state_ = State::closed;
}

Decoder::State Decoder::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

bool Decoder::order_known() const {
  std::lock_guard<std::mutex> lock(mu_);
  return opts_.byteorder != ByteOrder::automatic || dec_->reader().order_decided();
}

ByteOrder Decoder::order() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dec_->reader().decided_order();
}

bool Decoder::wrapper_known() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dec_->wrapper_known();
}

Wrapper Decoder::wrapper() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dec_->wrapper();
}

}  // namespace ptth
