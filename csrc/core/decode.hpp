// How a whole blob or a stream of chunks is decoded: the policy the bindings
// and the C++ callers share.
//
// - One-shot (`decode`): uncompressed input is bounded by itself (max_size
//   does not apply) and its payloads are borrowed from the input unless
//   `copy`; compressed input is inflated into owned buffers, capped by
//   max_size. Owned payloads are 64-byte aligned and in host byte order;
//   borrowed ones keep the wire order (RecordInfo::big_endian says which).
// - Streaming (`Decoder`): every payload is owned; the decoder is open until
//   close() succeeds (closed) or any call fails (failed); a closed or failed
//   decoder refuses every later call with `closed`, except that close() of a
//   closed decoder does nothing. Calls may come from several threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/inflate.hpp"
#include "core/reader.hpp"
#include "core/stream_decoder.hpp"

namespace ptth {

struct Decoded {
  Wrapper wrapper = Wrapper::none;
  std::vector<CollectedRecord> records;  // in blob order
};

Decoded decode(const uint8_t* p, size_t n, const ReadOptions& opts, bool copy);

// A compressed blob held whole in memory, inflated at once by the fastest
// inflater (inflate_blob_whole) when it succeeds cleanly and yields a blob
// that starts with the magic; null otherwise. The caller parses it in place
// and, on any error at all, reruns the streaming path, so every error keeps
// its reason and its place in the check order.
Buffer inflate_blob(const uint8_t* p, size_t n, Wrapper w, uint64_t max_size, uint64_t* size);

class Decoder {
 public:
  enum class State : uint8_t { open, closed, failed };

  explicit Decoder(const ReadOptions& opts);
  // The records this chunk completed, in order.
  std::vector<CollectedRecord> feed(const uint8_t* p, size_t n);
  void close();

  State state() const;
  bool order_known() const;  // false while byteorder "auto" has not decided
  ByteOrder order() const;
  bool wrapper_known() const;
  Wrapper wrapper() const;

 private:
  void check_open() const;
  template <typename F>
  void run(F f);

  ReadOptions opts_;
  CollectingSink sink_;
  std::unique_ptr<StreamDecoder> dec_;
  State state_ = State::open;
  mutable std::mutex mu_;
};

}  // namespace ptth
