// DEFLATE output for compress() and dumps(compress=): one standard zlib, gzip
// or raw DEFLATE stream, cut into fixed blocks that compress independently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/inflate.hpp"

namespace ptth {

// Checks a compression level (0..9); throws std::invalid_argument.
int check_level(long level);

// Uncompressed bytes per block. Part of the byte format: both engines cut here.
constexpr size_t kDeflateBlock = size_t(1) << 20;
// History each block is primed with: the 32 KiB before it.
constexpr size_t kDeflateWindow = size_t(1) << 15;

// The engine that compresses blocks at `level` in this build: "stored"
// (level 0), "isal" (levels 1..9 when ISA-L was built in) or "zlib-ng".
const char* deflate_engine(int level) noexcept;
// ISA-L's level for ptth's level 1..9: 1..3 -> 1, 4..6 -> 2, 7..9 -> 3.
int isal_level(int level) noexcept;
const char* isal_version() noexcept;  // "" when ISA-L is not built in
const char* isal_origin() noexcept;   // "installed", "bundled-build" or "off: why"

// Compresses a whole buffer (the pigz layout, docs/compression.md):
// the input is cut into kDeflateBlock-sized blocks; block i is compressed as
// raw DEFLATE primed with the kDeflateWindow bytes before it and ends with a
// sync flush (the last one with the final block); the blocks are joined under
// one wrapper header and one checksum of the whole input. Level 0 writes
// stored blocks, levels 1..9 run ISA-L (or zlib-ng without it). The bytes do
// not depend on `threads` (0 = every core); a thread compresses whole blocks.
// Throws Error(bad_argument) for a level outside 0..9 or wrapper none.
std::vector<uint8_t> deflate_all(const uint8_t* p, size_t n, int level, Wrapper w,
                                 unsigned threads = 1);

// deflate_all writing into memory the caller provides: once the blocks are
// compressed, alloc(total) is called (on the calling thread) for the stream's
// exact size and must return that many writable bytes (or throw).
void deflate_into(const uint8_t* p, size_t n, int level, Wrapper w, unsigned threads,
                  const std::function<uint8_t*(size_t)>& alloc);

// The threads deflate_all runs for `threads` on n bytes (0 = every core).
unsigned deflate_threads(size_t n, unsigned threads) noexcept;

}  // namespace ptth
