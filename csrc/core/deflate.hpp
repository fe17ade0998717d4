// DEFLATE output through zlib-ng's zng_ API, for compress() and dumps(compress=).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/inflate.hpp"
#include "core/writer.hpp"

struct zng_stream_s;

namespace ptth {

// A ByteSink that deflates what it is given. Output is sized up front from
// zng_deflateBound, so deflate never waits for output space.
class DeflateSink : public ByteSink {
 public:
  // level 0..9; wrapper zlib (windowBits 15), gzip (31) or deflate (-15).
  DeflateSink(int level, Wrapper w, uint64_t input_size);
  ~DeflateSink() override;
  void put(const uint8_t* p, size_t n) override;
  std::vector<uint8_t> finish();
  // Deflates p..p+n now; flush is Z_NO_FLUSH or Z_FINISH (then finish() only collects).
  void run(const uint8_t* p, size_t n, int flush);

 private:
  void flush_stage();

  std::unique_ptr<zng_stream_s> strm_;
  std::vector<uint8_t> out_;
  size_t used_ = 0;
  std::vector<uint8_t> stage_;  // gathers small writes (record headers)
  bool finished_ = false;
};

// Checks a level (0..9) and a wrapper name; throws Error(bad_argument).
int check_level(long level);

std::vector<uint8_t> deflate_all(const uint8_t* p, size_t n, int level, Wrapper w);

}  // namespace ptth
