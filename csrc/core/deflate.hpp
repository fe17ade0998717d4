// DEFLATE output through zlib-ng's zng_ API, for compress() and dumps(compress=).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/inflate.hpp"

namespace ptth {

// Checks a compression level (0..9); throws std::invalid_argument.
int check_level(long level);

// Compresses a whole buffer with the zlib, gzip or raw DEFLATE wrapper
// (windowBits 15, 31, -15; memLevel 8; default strategy). zlib-ng's stored and
// medium strategies cut blocks where output space runs out, so the call
// pattern is the one zlib_ng.compress() uses (one Z_FINISH call per 4 GiB of
// input, output space 16 KiB then doubling): both backends write the same bytes.
std::vector<uint8_t> deflate_all(const uint8_t* p, size_t n, int level, Wrapper w);

}  // namespace ptth
