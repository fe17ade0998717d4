#include "core/reader.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace ptth {

namespace {

constexpr size_t kNameStep = 4 * kMaxDims;  // names arrive in scratch-sized pieces
constexpr size_t kAutoWords = 1024;
constexpr int32_t kSmallInt = int32_t(1) << 24;  // |v| below this reads as an integer

bool plausible(uint32_t w) {
  uint32_t e = (w >> 23) & 0xFF;
  return (w & 0x7FFFFFFFu) == 0 || (e >= 64 && e <= 190);
}

uint32_t bswap32(uint32_t v) {
  return __builtin_bswap32(v);
}

}  // namespace

Reader::Reader(const ReadOptions& opts, RecordSink* sink) : opts_(opts), sink_(sink) {
  if (opts_.byteorder == ByteOrder::big) {
    order_ = ByteOrder::big;
    decided_ = true;
  } else if (opts_.byteorder == ByteOrder::little) {
    decided_ = true;
  }
  begin(State::magic, 4);
}

int64_t Reader::current_record() const noexcept {
  if (state_ <= State::count || state_ == State::done) return kNoRecord;
  return index_;
}

void Reader::fail(Reason r, const std::string& msg, uint64_t offset) const {
  if (named_ && state_ != State::done)
    throw Error(r, msg, offset, current_record(), rec_.name, /*has_name=*/true);
  throw Error(r, msg, offset, current_record());
}

void Reader::begin(State s, uint64_t need) {
  state_ = s;
  item_start_ = pos_;
  need_ = need;
  have_ = 0;
  if (s != State::done && pos_ + need > opts_.max_size)
    fail(Reason::too_large,
         "the blob would exceed max_size (" + std::to_string(opts_.max_size) +
             " bytes): pass a larger max_size, or max_size=ptth.UNLIMITED for no limit",
         pos_);
}

void Reader::feed(const uint8_t* p, size_t n, bool borrow) {
  while (n > 0) {
    if (state_ == State::done)
      throw Error(Reason::trailing_bytes, std::to_string(n) + " bytes follow the last record", pos_,
                  kNoRecord);
    if (state_ == State::payload && borrow) {
      if (have_ == 0 && n >= need_) {
        pos_ += need_;
        const uint8_t* payload = p;
        p += need_;
        n -= need_;
        complete_record(payload);
        continue;
      }
      if (have_ + n < need_) {
        pos_ += n;
        fail(Reason::truncated, "the payload is cut short", pos_);
      }
    }
    Want w = want();
    size_t k = std::min(n, w.n);
    std::memcpy(w.dst, p, k);
    p += k;
    n -= k;
    commit(k);
  }
}

Reader::Want Reader::want() {
  switch (state_) {
    case State::payload: {
      size_t room = 0;
      uint8_t* dst = sink_->payload_space(rec_, have_, &room);
      payload_dst_ = dst - have_;
      return {dst, size_t(std::min<uint64_t>(room, need_ - have_))};
    }
    case State::name: return {scratch_, size_t(std::min<uint64_t>(need_ - have_, kNameStep))};
    case State::done: return {scratch_, 4};  // anything written here is trailing
    default: return {scratch_ + have_, size_t(need_ - have_)};
  }
}

void Reader::commit(size_t n) {
  if (n == 0) return;
  if (state_ == State::done)
    throw Error(Reason::trailing_bytes, "bytes follow the last record", pos_, kNoRecord);
  if (state_ == State::name) rec_.name.append(reinterpret_cast<const char*>(scratch_), n);
  if (state_ == State::magic) {
    for (uint64_t i = have_; i < have_ + n; ++i)
      if (scratch_[i] != kMagic[i]) fail(Reason::bad_magic, "the blob does not start with PTTH", 0);
  }
  have_ += n;
  pos_ += n;
  if (have_ == need_) item_complete();
}

void Reader::item_complete() {
  switch (state_) {
    case State::magic: begin(State::version, 4); break;
    case State::version: {
      uint32_t v = load_be32(scratch_);
      if (v != kVersion)
        fail(Reason::bad_version, "unsupported version " + std::to_string(v), item_start_);
      begin(State::count, 4);
      break;
    }
    case State::count:
      count_ = load_be32(scratch_);
      if (count_ == 0)
        begin(State::done, 0);
      else
        begin(State::name_len, 4);
      break;
    case State::name_len:
      rec_ = RecordInfo{};
      rec_.index = index_;
      named_ = false;
      begin(State::name, load_be32(scratch_));
      if (need_ == 0) item_complete();
      break;
    case State::name: {
      const auto* s = reinterpret_cast<const uint8_t*>(rec_.name.data());
      if (!valid_utf8(s, rec_.name.size()))
        fail(Reason::bad_name, "the name is not valid UTF-8", item_start_);
      named_ = true;
      if (!names_.insert(rec_.name).second)
        fail(Reason::duplicate_name, "the name occurs twice", item_start_);
      begin(State::ndim, 4);
      break;
    }
    case State::ndim: {
      uint32_t ndim = load_be32(scratch_);
      if (ndim > kMaxDims)
        fail(Reason::too_many_dims, std::to_string(ndim) + " dims (at most 64)", item_start_);
      begin(State::dims, 4 * uint64_t(ndim));
      if (need_ == 0) item_complete();
      break;
    }
    case State::dims:
      rec_.dims.resize(need_ / 4);
      for (size_t i = 0; i < rec_.dims.size(); ++i) rec_.dims[i] = load_be32(scratch_ + 4 * i);
      begin(State::dtype, 4);
      break;
    case State::dtype:
      rec_.code = load_be32(scratch_);
      if (!valid_code(rec_.code))
        fail(Reason::bad_dtype, "unknown dtype code " + std::to_string(rec_.code), item_start_);
      rec_.dtype = DType(rec_.code);
      begin(State::data_len, 4);
      break;
    case State::data_len: {
      uint64_t data_len = load_be32(scratch_);
      uint64_t numel = 0, nbytes = 0;
      bool ok = checked_numel(rec_.dims.data(), rec_.dims.size(), &numel);
      const bool four = ok && checked_mul(numel, 4, &nbytes) && nbytes == data_len;
      if (four && (opts_.relabel == Relabel::on ||
                   (opts_.relabel == Relabel::automatic && rec_.dtype == DType::float64))) {
        rec_.dtype = DType::float32;
      } else if (!ok || !checked_mul(numel, itemsize(rec_.dtype), &nbytes)) {
        fail(Reason::size_overflow, "numel * itemsize overflows", item_start_);
      } else if (nbytes != data_len) {
        fail(Reason::length_mismatch,
             "data_len " + std::to_string(data_len) + " but the shape and dtype need " +
                 std::to_string(nbytes),
             item_start_);
      }
      // NumPy cannot shape even an empty array whose non-zero dims span more
      // than 2**63-1 bytes, so such a shape is an overflow too.
      if (!numpy_can_shape(rec_.dims.data(), rec_.dims.size(), itemsize(rec_.dtype)))
        fail(Reason::size_overflow, "the shape is larger than NumPy can represent", item_start_);
      rec_.numel = numel;
      rec_.nbytes = data_len;
      start_payload();
      break;
    }
    case State::payload: complete_record(payload_dst_); break;
    case State::done: break;
  }
}

void Reader::start_payload() {
  begin(State::payload, rec_.nbytes);
  rec_.payload_offset = pos_;
  payload_dst_ = nullptr;
  sink_->on_header(rec_);
  if (need_ == 0) complete_record(nullptr);
}

void Reader::complete_record(const uint8_t* payload) {
  if (opts_.relabel == Relabel::automatic && rec_.dtype == DType::int32)
    decide_relabel(payload, rec_.nbytes);
  if (!decided_ && rec_.dtype == DType::float32) decide_order(payload, rec_.nbytes);
  rec_.big_endian = order_ == ByteOrder::big;
  sink_->on_record(rec_, payload);
  payload_dst_ = nullptr;
  named_ = false;
  ++index_;
  if (index_ == count_)
    begin(State::done, 0);
  else
    begin(State::name_len, 4);
}

void Reader::decide_order(const uint8_t* payload, uint64_t nbytes) {
  size_t words = size_t(std::min<uint64_t>(nbytes / 4, kAutoWords));
  size_t le = 0, be = 0;
  for (size_t i = 0; i < words; ++i) {
    const uint8_t* b = payload + 4 * i;
    uint32_t w = uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
    le += plausible(w);
    be += plausible(bswap32(w));
  }
  if (le != be) {
    decided_ = true;
    order_ = be > le ? ByteOrder::big : ByteOrder::little;
    return;
  }
  if (ambiguity_.seen) return;
  // A tie decides nothing; it matters if some word (anywhere in the payload,
  // past the scored ones too) differs from its byte reversal and reads as a
  // plausible float in one of the two orders.
  for (uint64_t i = 0; i < nbytes / 4; ++i) {
    const uint8_t* b = payload + 4 * i;
    uint32_t w = uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
    if (w != bswap32(w) && (plausible(w) || plausible(bswap32(w)))) {
      ambiguity_ = {true, rec_.index, rec_.payload_offset, rec_.name};
      return;
    }
  }
}

void Reader::decide_relabel(const uint8_t* payload, uint64_t nbytes) {
  // Words read in the order in force: a float32 payload under code 2 scores as
  // floats of a sane magnitude, a genuine int32 one as small integers.
  size_t words = size_t(std::min<uint64_t>(nbytes / 4, kAutoWords));
  const bool big = order_ == ByteOrder::big;
  size_t as_float = 0, as_int = 0;
  for (size_t i = 0; i < words; ++i) {
    const uint8_t* b = payload + 4 * i;
    uint32_t w = uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
    if (big) w = bswap32(w);
    as_float += plausible(w);
    int32_t v;
    std::memcpy(&v, &w, 4);
    as_int += v > -kSmallInt && v < kSmallInt;
  }
  if (as_float > as_int) rec_.dtype = DType::float32;
}

void Reader::finish() const {
  if (state_ != State::done) fail(Reason::truncated, "the blob ends early", pos_);
}

void byteswap_inplace(uint8_t* p, uint64_t n, size_t width) noexcept {
  switch (width) {
    case 2:
      for (uint64_t i = 0; i < n; ++i) std::swap(p[2 * i], p[2 * i + 1]);
      break;
    case 4:
      for (uint64_t i = 0; i < n; ++i) {
        uint32_t v;
        std::memcpy(&v, p + 4 * i, 4);
        v = __builtin_bswap32(v);
        std::memcpy(p + 4 * i, &v, 4);
      }
      break;
    case 8:
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        v = __builtin_bswap64(v);
        std::memcpy(p + 8 * i, &v, 8);
      }
      break;
    default: break;
  }
}

uint8_t* CollectingSink::payload_space(const RecordInfo& r, uint64_t have, size_t* room) {
  // Memory follows the bytes that arrived: start small, double, never past nbytes.
  // Under a size hint the payload is allocated whole, unless a record completed
  // in this feed is still held here: the caller can drop that one before this
  // one grows (a stream of large records then peaks at one record, not two).
  constexpr uint64_t kFirst = uint64_t(1) << 18;
  uint64_t want = r.nbytes <= prealloc_ && records_.empty()
                      ? r.nbytes
                      : std::min<uint64_t>(r.nbytes, std::max<uint64_t>(kFirst, 2 * have));
  if (!pending_)
    pending_.reset(buffer_alloc(want));
  else if (buffer_capacity(pending_.get()) <= have) {
    uint8_t* grown = buffer_grow(pending_.get(), want);  // the old block is moved or freed
    (void)pending_.release();
    pending_.reset(grown);
  }
  uint64_t cap = std::min<uint64_t>(buffer_capacity(pending_.get()), r.nbytes);
  *room = size_t(std::min<uint64_t>(cap - have, SIZE_MAX));
  return pending_.get() + have;
}

void CollectingSink::on_record(const RecordInfo& r, const uint8_t* payload) {
  CollectedRecord c;
  c.info = r;
  if (pending_ && payload == pending_.get()) {
    c.owned = std::move(pending_);
  } else if (copy_) {
    c.owned.reset(buffer_alloc(r.nbytes));
    if (r.nbytes) std::memcpy(c.owned.get(), payload, r.nbytes);
  }
  if (c.owned) {
    if (r.big_endian) byteswap_inplace(c.owned.get(), r.numel, itemsize(r.dtype));
    c.data = c.owned.get();
  } else {
    c.data = payload;
  }
  records_.push_back(std::move(c));
}

}  // namespace ptth
