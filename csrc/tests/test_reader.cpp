// The reader, writer, inflate and deflate of ptth_core, without Python:
// the format's canonical vectors, every prefix, every split point, every wrapper, limits.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/deflate.hpp"
#include "core/inflate.hpp"
#include "core/reader.hpp"
#include "core/stream_decoder.hpp"
#include "core/writer.hpp"
#include "tests/check.hpp"

using namespace ptth;

static const char* kVector1 =
    "5054544800000001000000010000000177000000010000000200000000000000080000803f000000c0";
static const char* kVector2 = "505454480000000100000000";
static const char* kVector3 =
    "5054544800000001000000030000000966632e776569676874000000020000000200000003000000030000000c00"
    "3800bc00400000ff7b00b40000000766632e626961730000000000000001000000080000000000000c400000000573"
    "7465707300000001000000000000000200000000";
static const char* kVector4 =
    "5054544800000001000000010000000177000000010000000200000000000000083f800000c0000000";

struct Result {
  bool ok = false;
  Reason reason = Reason::closed;  // overwritten by the error, if any
  uint64_t offset = 0;
  int64_t record = 0;
  std::vector<CollectedRecord> records;
};

// Decodes `data` cut into pieces of `step` bytes (0: one-shot with borrowing).
static Result decode(const Bytes& data, size_t step, ReadOptions opts = {}) {
  Result r;
  CollectingSink sink(step != 0);
  try {
    StreamDecoder dec(opts, &sink);
    if (step == 0) {
      dec.feed(data.data(), data.size(), true);
    } else {
      for (size_t i = 0; i < data.size(); i += step)
        dec.feed(data.data() + i, std::min(step, data.size() - i));
    }
    dec.finish();
    r.ok = true;
  } catch (const Error& e) {
    r.reason = e.reason();
    r.offset = e.offset();
    r.record = e.record();
  }
  r.records = std::move(sink.records());
  return r;
}

static Bytes payload(const CollectedRecord& c) {
  return Bytes(c.data, c.data + c.info.nbytes);
}

static void test_vectors() {
  Result r = decode(hex(kVector1), 0);
  CHECK(r.ok && r.records.size() == 1);
  CHECK(r.records[0].info.name == "w" && r.records[0].info.dims == std::vector<uint32_t>{2});
  float v[2];
  std::memcpy(v, r.records[0].data, 8);
  CHECK(v[0] == 1.0f && v[1] == -2.0f);

  r = decode(hex(kVector2), 0);
  CHECK(r.ok && r.records.empty());

  r = decode(hex(kVector3), 0);
  CHECK(r.ok && r.records.size() == 3);
  CHECK(r.records[0].info.dtype == DType::float16 && r.records[0].info.numel == 6);
  CHECK(r.records[1].info.dtype == DType::float64 && r.records[1].info.dims.empty());
  CHECK(r.records[2].info.dtype == DType::int32 && r.records[2].info.numel == 0);

  ReadOptions big;
  big.byteorder = ByteOrder::automatic;
  r = decode(hex(kVector4), 0, big);
  CHECK(r.ok && r.records[0].info.big_endian);
  r = decode(hex(kVector4), 3, big);  // streamed: owned and swapped to host order
  std::memcpy(v, r.records[0].data, 8);
  CHECK(r.ok && v[0] == 1.0f && v[1] == -2.0f);
}

static void test_prefixes_and_splits() {
  const Bytes blob = hex(kVector3);
  for (size_t n = 0; n < blob.size(); ++n) {
    Bytes prefix(blob.begin(), blob.begin() + long(n));
    Result one = decode(prefix, 0), streamed = decode(prefix, 1);
    CHECK(!one.ok && one.reason == Reason::truncated && one.offset == n);
    CHECK(!streamed.ok && streamed.reason == Reason::truncated && streamed.offset == n);
    CHECK(one.record == streamed.record);
  }
  const Result whole = decode(blob, 0);
  for (size_t step = 1; step <= blob.size(); ++step) {
    Result r = decode(blob, step);
    CHECK(r.ok && r.records.size() == whole.records.size());
    for (size_t i = 0; i < r.records.size() && i < whole.records.size(); ++i)
      CHECK(payload(r.records[i]) == payload(whole.records[i]));
  }
}

static Bytes with_u32(Bytes b, size_t at, uint32_t v) {
  store_be32(b.data() + at, v);
  return b;
}

static void test_rules() {
  const Bytes v1 = hex(kVector1);
  // Input that does not start with PTTH is raw DEFLATE (docs/format.md), so a bad
  // magic shows only inside a compressed stream.
  Bytes magic = with_u32(v1, 0, 0x50545458);
  Result r = decode(deflate_all(magic.data(), magic.size(), 6, Wrapper::zlib), 0);
  CHECK(r.reason == Reason::bad_magic && r.offset == 0);
  r = decode(with_u32(v1, 4, 2), 0);
  CHECK(r.reason == Reason::bad_version && r.offset == 4);
  Bytes bad_name = v1;
  bad_name[16] = 0xC0;  // an overlong start byte
  r = decode(bad_name, 0);
  CHECK(r.reason == Reason::bad_name && r.offset == 16 && r.record == 0);
  r = decode(with_u32(v1, 17, 65), 0);
  CHECK(r.reason == Reason::too_many_dims && r.offset == 17);
  r = decode(with_u32(v1, 25, 4), 0);
  CHECK(r.reason == Reason::bad_dtype && r.offset == 25);
  r = decode(with_u32(v1, 29, 12), 0);
  CHECK(r.reason == Reason::length_mismatch && r.offset == 29);
  Bytes trailing = v1;
  trailing.push_back(0);
  r = decode(trailing, 0);
  CHECK(r.reason == Reason::trailing_bytes && r.offset == v1.size() && r.record == kNoRecord);
  // 4e9 records claimed by 12 bytes: fails at once, as truncation.
  r = decode(with_u32(hex(kVector2), 8, 4000000000u), 0);
  CHECK(r.reason == Reason::truncated && r.offset == 12 && r.record == 0);
  // Overflowing dims fail; a zero dim beside them makes numel 0.
  // name_len 0, ndim 3, dims, dtype 0, data_len 0
  Bytes over =
      hex("505454480000000100000001"
          "00000000"
          "00000003"
          "ffffffff"
          "ffffffff"
          "0000ffff"
          "00000000"
          "00000000");
  r = decode(over, 0);
  CHECK(r.reason == Reason::size_overflow && r.offset == 36);
  // A zero dim makes numel 0, but NumPy must still be able to shape it:
  // the non-zero dims times the itemsize must stay within 2**63-1 bytes.
  CHECK(decode(with_u32(over, 20, 0), 0).ok);                               // 0 x (2^32-1) x 65535
  CHECK(decode(with_u32(over, 28, 0), 0).reason == Reason::size_overflow);  // (2^32-1)^2 x 0
  // A payload larger than the limit fails before it is allocated.
  ReadOptions small;
  small.max_size = 40;
  r = decode(v1, 1, small);
  CHECK(r.reason == Reason::too_large && r.offset == 33);
}

static Bytes deflate_bytes(const Bytes& b, int level, Wrapper w) {
  return deflate_all(b.data(), b.size(), level, w);
}

static void test_compressed() {
  const Bytes blob = hex(kVector3);
  const Result plain = decode(blob, 0);
  for (Wrapper w : {Wrapper::zlib, Wrapper::gzip, Wrapper::deflate}) {
    for (int level = 0; level <= 9; ++level) {
      Bytes c = deflate_bytes(blob, level, w);
      CHECK(detect_wrapper(c.data(), std::min<size_t>(c.size(), 4)) == w);
      for (size_t step : {size_t(0), size_t(1), size_t(7)}) {
        Result r = decode(c, step);
        CHECK(r.ok && r.records.size() == plain.records.size());
        for (size_t i = 0; i < r.records.size() && i < plain.records.size(); ++i)
          CHECK(payload(r.records[i]) == payload(plain.records[i]));
      }
      auto [out, size] = inflate_all(c.data(), c.size(), w, UINT64_MAX);
      CHECK(size == blob.size() && std::memcmp(out.get(), blob.data(), blob.size()) == 0);
    }
    Bytes c = deflate_bytes(blob, 6, w);
    for (size_t n = 0; n < c.size(); ++n) {  // every cut of the stream
      Result r = decode(Bytes(c.begin(), c.begin() + long(n)), 0);
      // Fewer than 4 bytes are detected on what there is (1F alone is raw DEFLATE), and
      // raw DEFLATE that fails before yielding the magic is not_ptth.
      bool short_cut = r.reason == Reason::not_ptth && (n < 4 || w == Wrapper::deflate);
      CHECK(!r.ok &&
            (r.reason == Reason::stream_truncated || r.reason == Reason::truncated || short_cut));
    }
    Bytes extra = c;
    extra.push_back(0);
    CHECK(decode(extra, 0).reason == Reason::stream_trailing);
    if (w != Wrapper::deflate) {
      Bytes sum = c;
      sum[sum.size() - (w == Wrapper::gzip ? 8 : 1)] ^= 0x01;
      CHECK(decode(sum, 0).reason == Reason::bad_checksum);
    }
  }
  // The encoder writes what validate() sized, header fields big-endian.
  std::vector<float> data(5000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = float(i % 97) * 0.25f;
  WriteRecord rec;
  rec.name = "w";
  rec.dims = {uint64_t(data.size())};
  rec.dtype = DType::float32;
  rec.data = data.data();
  rec.numel = data.size();
  std::vector<WriteRecord> recs{rec};
  uint64_t size = validate(recs);
  CHECK(size == 12 + 4 + 1 + 4 + 4 + 4 + 4 + 4 * data.size());
  Bytes raw(size);
  encode_to(recs, raw.data(), size);
  Result r = decode(raw, 0);
  CHECK(r.ok && r.records.size() == 1 && payload(r.records[0]).size() == 4 * data.size());
  CHECK(std::memcmp(r.records[0].data, data.data(), 4 * data.size()) == 0);
}

int main() {
  test_vectors();
  test_prefixes_and_splits();
  test_rules();
  test_compressed();
  return report("test_reader");
}
