#include "core/deflate.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include <zlib-ng.h>

#ifdef PTTH_HAVE_ISAL
#include <igzip_lib.h>
#endif

namespace ptth {

namespace {

using Bytes = std::vector<uint8_t>;

// ---- level 0: stored blocks, written here (no library decides their cuts) ----

void stored_block(const uint8_t* p, size_t n, bool last, Bytes* out) {
  constexpr size_t kMaxStored = 65535;
  size_t pieces = n == 0 ? 1 : (n + kMaxStored - 1) / kMaxStored;
  out->reserve(out->size() + n + 5 * pieces);
  for (size_t i = 0; i < pieces; ++i) {
    size_t k = std::min(kMaxStored, n - i * kMaxStored);
    uint8_t head[5] = {uint8_t(last && i + 1 == pieces), uint8_t(k), uint8_t(k >> 8), uint8_t(~k),
                       uint8_t(~k >> 8)};
    out->insert(out->end(), head, head + 5);
    out->insert(out->end(), p + i * kMaxStored, p + i * kMaxStored + k);
  }
}

#ifdef PTTH_HAVE_ISAL
// ---- levels 1..9: ISA-L, called as the isal module's compressobj() does ------

// compressobj(level, DEFLATED, -15, memLevel=8, zdict=...): ISA-L's LARGE buffer.
uint32_t isal_level_buf_size(int lvl) {
  switch (lvl) {
    case 1: return ISAL_DEF_LVL1_LARGE;
    case 2: return ISAL_DEF_LVL2_LARGE;
    default: return ISAL_DEF_LVL3_LARGE;
  }
}

// Output space that keeps its capacity from block to block (no page is
// faulted in or zero-filled twice by one thread).
struct Scratch {
  std::unique_ptr<uint8_t[]> data;
  size_t cap = 0;
  void ensure(size_t need, size_t used) {
    if (need <= cap) return;
    size_t c = std::max(need, 2 * cap);
    std::unique_ptr<uint8_t[]> grown(new uint8_t[c]);
    if (used) std::memcpy(grown.get(), data.get(), used);
    data = std::move(grown);
    cap = c;
  }
};

// What one thread reuses for every block it compresses.
struct IsalWorker {
  std::unique_ptr<isal_zstream> stream{new isal_zstream};
  std::unique_ptr<uint8_t[]> level_buf;
  uint32_t level_buf_size = 0;
  Scratch out;
};

// Runs isal_deflate until it stops asking for output space, offering the
// space the isal module does: a fresh 16 KiB per call of compress() or
// flush(), doubled whenever it fills (ISA-L's block cuts follow that space).
void isal_drain(isal_zstream* s, Scratch* out, size_t* used) {
  const size_t phase = *used;
  size_t length = 16 * 1024;
  do {
    if (*used - phase == length) length *= 2;
    out->ensure(phase + length, *used);
    s->next_out = out->data.get() + *used;
    s->avail_out = uint32_t(std::min<size_t>(phase + length - *used, UINT32_MAX));
    uint32_t before = s->avail_out;
    int rc = isal_deflate(s);
    *used += before - s->avail_out;
    if (rc != COMP_OK) throw std::runtime_error("isal_deflate failed: " + std::to_string(rc));
  } while (s->avail_out == 0);
}

void isal_block(IsalWorker* wk, int level, const uint8_t* dict, size_t dict_n, const uint8_t* p,
                size_t n, bool last, Bytes* out) {
  const int lvl = isal_level(level);
  const uint32_t buf_size = isal_level_buf_size(lvl);
  if (wk->level_buf_size < buf_size) {
    wk->level_buf.reset(new uint8_t[buf_size]);
    wk->level_buf_size = buf_size;
  }
  isal_zstream* s = wk->stream.get();
  isal_deflate_init(s);
  s->next_in = nullptr;
  s->avail_in = 0;
  s->level_buf_size = buf_size;
  s->level_buf = wk->level_buf.get();
  s->level = uint32_t(lvl);
  s->hist_bits = 15;
  s->gzip_flag = IGZIP_DEFLATE;
  if (dict_n && isal_deflate_set_dict(s, const_cast<uint8_t*>(dict), uint32_t(dict_n)) != COMP_OK)
    throw std::runtime_error("isal_deflate_set_dict failed");
  size_t used = 0;
  // compress(block): all the input with NO_FLUSH (blocks are far below 4 GiB) ...
  s->next_in = const_cast<uint8_t*>(p);
  s->avail_in = uint32_t(n);
  s->flush = NO_FLUSH;
  isal_drain(s, &wk->out, &used);
  // ... then flush(Z_SYNC_FLUSH), or flush(Z_FINISH) for the last block.
  s->avail_in = 0;
  s->flush = last ? FULL_FLUSH : SYNC_FLUSH;
  if (last) s->end_of_stream = 1;
  isal_drain(s, &wk->out, &used);
  out->assign(wk->out.data.get(), wk->out.data.get() + used);
}
#endif

// ---- fallback for levels 1..9 without ISA-L: zlib-ng -------------------------

struct DeflateEnd {
  void operator()(zng_stream* s) const noexcept {
    zng_deflateEnd(s);
    delete s;
  }
};

[[maybe_unused]] void zng_block(int level, const uint8_t* dict, size_t dict_n, const uint8_t* p,
                                size_t n, bool last, Bytes* out) {
  std::unique_ptr<zng_stream, DeflateEnd> s(new zng_stream());
  int32_t rc = zng_deflateInit2(s.get(), level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  if (rc != Z_OK) {
    s.release();
    if (rc == Z_MEM_ERROR) throw std::bad_alloc();
    throw std::runtime_error("zng_deflateInit2 failed");
  }
  if (dict_n && zng_deflateSetDictionary(s.get(), dict, uint32_t(dict_n)) != Z_OK)
    throw std::runtime_error("zng_deflateSetDictionary failed");
  out->resize(zng_deflateBound(s.get(), static_cast<unsigned long>(n)) + 16);
  s->next_in = p;
  s->avail_in = uint32_t(n);
  size_t used = 0;
  do {
    if (used == out->size()) out->resize(out->size() * 2);
    s->next_out = out->data() + used;
    s->avail_out = uint32_t(std::min<size_t>(out->size() - used, UINT32_MAX));
    uint32_t before = s->avail_out;
    rc = zng_deflate(s.get(), last ? Z_FINISH : Z_SYNC_FLUSH);
    used += before - s->avail_out;
    if (rc == Z_STREAM_ERROR) throw std::runtime_error("zng_deflate failed");
  } while (s->avail_out == 0);
  out->resize(used);
}

struct Worker {
#ifdef PTTH_HAVE_ISAL
  IsalWorker isal;
#endif
};

void compress_block(Worker* wk, int level, const uint8_t* dict, size_t dict_n, const uint8_t* p,
                    size_t n, bool last, Bytes* out) {
  if (level == 0) return stored_block(p, n, last, out);
#ifdef PTTH_HAVE_ISAL
  return isal_block(&wk->isal, level, dict, dict_n, p, n, last, out);
#else
  (void)wk;
  return zng_block(level, dict, dict_n, p, n, last, out);
#endif
}

// ---- wrapper ---------------------------------------------------------------

void put_be32(Bytes* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(uint8_t(v >> s));
}
void put_le32(Bytes* out, uint32_t v) {
  for (int s = 0; s < 32; s += 8) out->push_back(uint8_t(v >> s));
}

// zlib's header conventions: FLEVEL (zlib) and XFL (gzip) from the level; OS 3.
void put_header(Bytes* out, Wrapper w, int level) {
  if (w == Wrapper::zlib) {
    static const uint8_t flg[4] = {0x01, 0x5E, 0x9C, 0xDA};
    int flevel = level < 2 ? 0 : level < 6 ? 1 : level == 6 ? 2 : 3;
    out->push_back(0x78);
    out->push_back(flg[flevel]);
  } else if (w == Wrapper::gzip) {
    uint8_t xfl = level == 9 ? 2 : level < 2 ? 4 : 0;
    const uint8_t head[10] = {0x1F, 0x8B, 0x08, 0, 0, 0, 0, 0, xfl, 0x03};
    out->insert(out->end(), head, head + 10);
  }
}

}  // namespace

int check_level(long level) {
  if (level < 0 || level > 9)
    throw std::invalid_argument("compression level must be 0..9, not " + std::to_string(level));
  return int(level);
}

int isal_level(int level) noexcept {
  return level <= 3 ? 1 : level <= 6 ? 2 : 3;
}

const char* deflate_engine(int level) noexcept {
  if (level == 0) return "stored";
#ifdef PTTH_HAVE_ISAL
  return "isal";
#else
  return "zlib-ng";
#endif
}

const char* isal_version() noexcept {
#ifdef PTTH_HAVE_ISAL
  return PTTH_ISAL_VERSION;
#else
  return "";
#endif
}

const char* isal_origin() noexcept {
  return PTTH_ISAL_ORIGIN;
}

unsigned deflate_threads(size_t n, unsigned threads) noexcept {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  size_t blocks = std::max<size_t>(1, (n + kDeflateBlock - 1) / kDeflateBlock);
  return unsigned(std::min<size_t>(threads, blocks));
}

void deflate_into(const uint8_t* p, size_t n, int level, Wrapper w, unsigned threads,
                  const std::function<uint8_t*(size_t)>& alloc) {
  window_bits(w);  // wrapper none is refused here
  check_level(level);
  static const uint8_t kNothing = 0;
  if (n == 0) p = &kNothing;  // ISA-L does pointer arithmetic on next_in even for 0 bytes
  const size_t count = std::max<size_t>(1, (n + kDeflateBlock - 1) / kDeflateBlock);
  std::vector<Bytes> parts(count);
  std::vector<uint32_t> sums(count);
  const bool gzip = w == Wrapper::gzip;
  std::atomic<size_t> next{0};
  std::atomic<bool> stop{false};
  std::exception_ptr failure;
  std::atomic<int> failed{0};

  auto work = [&] {
    try {
      Worker wk;
      while (!stop.load(std::memory_order_relaxed)) {
        const size_t i = next.fetch_add(1);
        if (i >= count) break;
        size_t start = i * kDeflateBlock, len = std::min(kDeflateBlock, n - std::min(n, start));
        size_t dict_n = std::min(start, kDeflateWindow);
        const uint8_t* in = p + std::min(start, n);
        compress_block(&wk, level, in - dict_n, dict_n, in, len, i + 1 == count, &parts[i]);
        uint32_t z = uint32_t(len);
        sums[i] = gzip ? uint32_t(zng_crc32(0, in, z)) : uint32_t(zng_adler32(1, in, z));
      }
    } catch (...) {
      stop = true;
      if (failed.fetch_add(1) == 0) failure = std::current_exception();
    }
  };
  const unsigned nthreads = deflate_threads(n, threads);
  if (nthreads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    pool.reserve(nthreads - 1);
    try {
      for (unsigned t = 1; t < nthreads; ++t) pool.emplace_back(work);
    } catch (...) {
      stop = true;  // could not start a thread: the ones running finish, then report
      for (auto& th : pool) th.join();
      throw;
    }
    work();
    for (auto& th : pool) th.join();
  }
  if (failure) std::rethrow_exception(failure);

  // One checksum of the whole input, combined from the blocks' in order.
  uint32_t sum = sums[0];
  for (size_t i = 1; i < count; ++i) {
    size_t len = std::min(kDeflateBlock, n - i * kDeflateBlock);
    sum = gzip ? uint32_t(zng_crc32_combine(sum, sums[i], int64_t(len)))
               : uint32_t(zng_adler32_combine(sum, sums[i], int64_t(len)));
  }
  Bytes head, trail;
  put_header(&head, w, level);
  if (w == Wrapper::zlib) put_be32(&trail, sum);
  if (gzip) {
    put_le32(&trail, sum);
    put_le32(&trail, uint32_t(n));
  }
  size_t total = head.size() + trail.size();
  for (const Bytes& b : parts) total += b.size();
  uint8_t* dst = alloc(total);
  if (!head.empty()) std::memcpy(dst, head.data(), head.size());
  dst += head.size();
  for (Bytes& b : parts) {
    if (!b.empty()) std::memcpy(dst, b.data(), b.size());
    dst += b.size();
    Bytes().swap(b);
  }
  if (!trail.empty()) std::memcpy(dst, trail.data(), trail.size());
}

std::vector<uint8_t> deflate_all(const uint8_t* p, size_t n, int level, Wrapper w,
                                 unsigned threads) {
  Bytes out;
  deflate_into(p, n, level, w, threads, [&](size_t total) {
    out.resize(total);
    return out.data();
  });
  return out;
}

}  // namespace ptth
