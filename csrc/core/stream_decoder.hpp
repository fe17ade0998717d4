// The streaming decoder: wrapper detection on the first bytes, then the
// reader fed directly (uncompressed) or through inflate-while-parsing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "core/inflate.hpp"
#include "core/reader.hpp"

namespace ptth {

// The streaming decoder: detects the wrapper from the first bytes, then feeds
// the reader directly (none) or inflates straight into what the reader wants.
class StreamDecoder {
 public:
  StreamDecoder(const ReadOptions& opts, RecordSink* sink);
  ~StreamDecoder();

  // With `borrow` (uncompressed one-shot input only): see Reader::feed.
  void feed(const uint8_t* p, size_t n, bool borrow = false);
  void finish();

  bool wrapper_known() const noexcept { return known_; }
  Wrapper wrapper() const noexcept { return wrapper_; }
  const Reader& reader() const noexcept { return reader_; }

 private:
  void decide(bool final);
  void dispatch(const uint8_t* p, size_t n, bool borrow);
  void inflate(const uint8_t* p, size_t n);
  template <typename F>
  void guarded(F f);
  [[noreturn]] void not_ptth() const;

  Reader reader_;
  std::unique_ptr<Inflater> inflater_;
  Wrapper wrapper_ = Wrapper::none;
  bool known_ = false;
  uint8_t head_[4];
  size_t head_n_ = 0;
  uint8_t first_[4] = {};  // the input's first bytes, for messages
  size_t first_n_ = 0;
};

}  // namespace ptth
