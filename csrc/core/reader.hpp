// The PTTH record parser: a state machine fed by chunks of any size.
//
// One machine serves every way of reading: one-shot parsing of a whole buffer
// (payloads borrowed from the input, nothing copied), streaming (`feed` in
// chunks, payloads copied into buffers the sink provides) and inflate-while-
// parsing (the inflater writes straight into `want()`, then `commit()`s).
// Rules are checked in stream order, exactly as DEVELOPERS.md lists them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/buffer.hpp"
#include "core/format.hpp"
#include "core/keyed_hash.hpp"

namespace ptth {

enum class ByteOrder : uint8_t { little, big, automatic };
// relabel_float32: off; on (a record whose data_len is 4 * numel is float32,
// whatever its code); automatic (code 1 with 4 * numel bytes is float32; a
// code-2 record is float32 when more of its words look like floats than like
// small integers; see the format document).
enum class Relabel : uint8_t { off, on, automatic };

struct ReadOptions {
  ByteOrder byteorder = ByteOrder::little;
  Relabel relabel = Relabel::off;
  // Largest blob the reader will wait for (checked before each item).
  uint64_t max_size = UINT64_MAX;
  // Streaming: a payload of up to this many bytes may be allocated whole
  // before its bytes arrive (a source of known size: a longer claim is
  // truncation anyway). 0: memory follows the bytes that arrived.
  uint64_t prealloc = 0;
};

struct RecordInfo {
  uint32_t index = 0;
  std::string name;
  std::vector<uint32_t> dims;
  DType dtype = DType::float32;  // effective dtype (after relabel_float32); for a
                                 // code-2 record under Relabel::automatic, final
                                 // only when on_record runs
  uint32_t code = 0;             // dtype code as written
  uint64_t numel = 0;
  uint64_t nbytes = 0;  // == data_len
  uint64_t payload_offset = 0;
  bool big_endian = false;  // final only when the sink's on_record runs
};

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  // The record's header passed every check and its payload comes next: a sink
  // may refuse the record here (throw), before any payload byte is stored.
  virtual void on_header(const RecordInfo& r) { (void)r; }
  // Room for the payload from byte `have` on, as its bytes arrive: return a
  // pointer to payload byte `have` and set *room to the writable bytes there
  // (at least 1). The pointer may differ between calls (a buffer that grows).
  virtual uint8_t* payload_space(const RecordInfo& r, uint64_t have, size_t* room) = 0;
  // The record is complete. `payload` is the sink's own buffer, or, when the
  // reader was fed with `borrow`, a pointer into the caller's input; it is
  // null for an empty payload (payload_space is not called for those).
  virtual void on_record(const RecordInfo& r, const uint8_t* payload) = 0;
};

class Reader {
 public:
  Reader(const ReadOptions& opts, RecordSink* sink);

  // Consume n bytes. With `borrow`, the bytes are the whole rest of the input
  // and stay valid after the call: payloads lying wholly inside them are
  // handed to the sink in place, and a payload that cannot complete fails as
  // truncated before anything is allocated for it.
  void feed(const uint8_t* p, size_t n, bool borrow = false);

  // Where the next bytes of the current item go, and how many it still needs
  // (at least 1). For inflate-while-parsing: write there, then commit().
  struct Want {
    uint8_t* dst;
    size_t n;
  };
  Want want();
  void commit(size_t n);

  // The input has ended: throws `truncated` unless the blob is complete.
  void finish() const;

  bool done() const noexcept { return state_ == State::done; }
  uint64_t position() const noexcept { return pos_; }
  // Byte order in force: little until "auto" decides.
  ByteOrder decided_order() const noexcept { return order_; }
  bool order_decided() const noexcept { return decided_; }
  // Under "auto", before a decision: a float32 payload scored a tie although
  // a word of it differs from its byte reversal and is a plausible float in
  // one order at least (it may be misread).
  // The first such record's index, payload offset and name.
  struct Ambiguity {
    bool seen = false;
    uint32_t record = 0;
    uint64_t offset = 0;
    std::string name;
  };
  const Ambiguity& ambiguity() const noexcept { return ambiguity_; }
  int64_t current_record() const noexcept;

 private:
  enum class State : uint8_t {
    magic,
    version,
    count,
    name_len,
    name,
    ndim,
    dims,
    dtype,
    data_len,
    payload,
    done
  };

  void begin(State s, uint64_t need);
  void item_complete();
  void start_payload();
  void complete_record(const uint8_t* payload);
  void decide_order(const uint8_t* payload, uint64_t nbytes);
  void decide_relabel(const uint8_t* payload, uint64_t nbytes);
  [[noreturn]] void fail(Reason r, const std::string& msg, uint64_t offset) const;

  ReadOptions opts_;
  RecordSink* sink_;
  State state_ = State::magic;
  uint64_t pos_ = 0;         // bytes consumed so far
  uint64_t item_start_ = 0;  // offset where the current item began
  uint64_t need_ = 0;        // bytes the current item needs in all
  uint64_t have_ = 0;        // bytes of it received
  uint32_t count_ = 0;
  uint32_t index_ = 0;
  uint8_t* payload_dst_ = nullptr;  // start of the sink's payload buffer, once asked
  ByteOrder order_ = ByteOrder::little;
  bool decided_ = false;
  Ambiguity ambiguity_;
  RecordInfo rec_;
  bool named_ = false;  // rec_.name is complete and valid (errors carry it)
  std::unordered_set<std::string, KeyedHash> names_;
  alignas(8) uint8_t scratch_[4 * kMaxDims];
};

// A sink that keeps every completed record: borrowed payloads as pointers
// into the input, or (with `copy`, or when the reader asks for a buffer) in
// owned, aligned buffers converted to host byte order. Streaming readers
// must use `copy`: they have no input to borrow from. It touches no Python
// object, so a caller can run the reader without the GIL and build arrays after.
struct CollectedRecord {
  RecordInfo info;
  const uint8_t* data = nullptr;  // the payload (into `owned` or into the input)
  Buffer owned;                   // set when the payload was copied
};

class CollectingSink : public RecordSink {
 public:
  explicit CollectingSink(bool copy, uint64_t prealloc = 0) : copy_(copy), prealloc_(prealloc) {}
  uint8_t* payload_space(const RecordInfo& r, uint64_t have, size_t* room) override;
  void on_record(const RecordInfo& r, const uint8_t* payload) override;
  std::vector<CollectedRecord>& records() noexcept { return records_; }
  // Frees the buffer of a payload that completed but is not kept.
  void payload_space_release() noexcept { pending_.reset(); }

 private:
  bool copy_;
  uint64_t prealloc_;
  Buffer pending_;
  std::vector<CollectedRecord> records_;
};

// Swaps each item of `n` items of `width` bytes in place.
void byteswap_inplace(uint8_t* p, uint64_t n, size_t width) noexcept;

}  // namespace ptth
