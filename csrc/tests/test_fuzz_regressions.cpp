// Inputs the fuzzers in csrc/fuzz (or the core's tests built with their
// sanitizers) once broke, each with the outcome the fix gives. The fuzz seeds
// replay the fuzzers' findings too (REGRESSIONS in csrc/fuzz/make_corpus.py).
#include <cstdio>
#include <string>
#include <vector>

#include "core/inflate.hpp"
#include "core/reader.hpp"
#include "core/stream_decoder.hpp"
#include "tests/check.hpp"

using namespace ptth;

struct Failure {
  bool thrown = false;
  Reason reason = Reason::closed;  // overwritten by the error, if any
  uint64_t offset = 0;
};

static Failure decompress(const Bytes& data, Wrapper w, uint64_t max_size) {
  Failure f;
  try {
    inflate_all(data.data(), data.size(), w, max_size);
  } catch (const Error& e) {
    f = {true, e.reason(), e.offset()};
  }
  return f;
}

// fuzz_inflate: a zlib stream of a 41-byte blob whose Adler-32 is wrong.
// zlib-ng produces the 41st byte and reports the bad checksum in the same
// call; decompress(max_size=40) said bad_checksum at offset 41 (past the
// limit) where the fallback says too_large at 40 -- output beyond the limit
// came first. inflate_all now checks the limit before the step's error.
static void test_limit_before_stream_error() {
  const Bytes z = hex("789c0b0809f16060606084e17228838901027818181aec81f4010043250349");
  Failure f = decompress(z, Wrapper::zlib, 40);
  CHECK(f.thrown && f.reason == Reason::too_large && f.offset == 40);
  f = decompress(z, Wrapper::zlib, 41);  // within the limit the checksum error stands
  CHECK(f.thrown && f.reason == Reason::bad_checksum && f.offset == 41);
  for (uint64_t max_size : {uint64_t(0), uint64_t(1), uint64_t(39)}) {
    f = decompress(z, Wrapper::zlib, max_size);
    CHECK(f.thrown && f.reason == Reason::too_large && f.offset == max_size);
  }
}

// C++ tests under ASan/UBSan (the fuzz build with PTTH_BUILD_TESTS=ON): empty
// input as (nullptr, 0) -- what an empty std::vector's data() gives -- reached
// memcpy(head_, nullptr, 0) in StreamDecoder::feed and memcmp(nullptr, ..., 0)
// in detect_wrapper: undefined behaviour (both are declared nonnull), caught
// only by UBSan. Empty input is `truncated` at 0, like any proper prefix of PTTH.
static void test_empty_input_as_null() {
  const uint8_t* none = nullptr;
  CHECK(detect_wrapper(none, 0) == Wrapper::none);
  for (bool borrow : {true, false}) {
    CollectingSink sink(!borrow);
    StreamDecoder dec(ReadOptions{}, &sink);
    Failure f;
    try {
      dec.feed(none, 0, borrow);
      dec.finish();
    } catch (const Error& e) {
      f = {true, e.reason(), e.offset()};
    }
    CHECK(f.thrown && f.reason == Reason::truncated && f.offset == 0);
  }
}

int main() {
  test_limit_before_stream_error();
  test_empty_input_as_null();
  return report("test_fuzz_regressions");
}
