// The heap behind one nghttp2 session (session.cc installs it as the
// session's nghttp2_mem). nghttp2 allocates and frees the same few small
// objects for every stream (the stream, outbound items, header list copies,
// HPACK buffers); freed blocks up to kLargestCachedBlock wait here, by size
// class, for the next stream instead of going back to malloc. The cache is
// bounded by max_cached_bytes (and trim()), so that an idle session holds
// little memory; everything cached is freed with it.
//
// Threading: like its Session, one thread only.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace trellis::http2 {

class BlockCache {
 public:
  // Requests above this size always go to malloc and back to free.
  static constexpr size_t kLargestCachedBlock = 2048;

  struct Stats {
    uint64_t allocations = 0;       // blocks handed out (malloc, calloc, growing realloc)
    uint64_t heap_allocations = 0;  // of which malloc/calloc/realloc had to provide
    size_t cached_bytes = 0;        // freed blocks kept, headers included; <= max_cached_bytes
    size_t cached_blocks = 0;
  };

  // max_cached_bytes: 0 caches nothing (every block goes back to free).
  explicit BlockCache(size_t max_cached_bytes);
  // Frees the cached blocks; blocks still handed out must not be released
  // afterwards (nghttp2_session_del runs first).
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // malloc/calloc/realloc/free semantics: null on failure, realloc(nullptr)
  // allocates, release(nullptr) does nothing. Every block is aligned like
  // malloc's.
  void* allocate(size_t size);
  void* allocate_zeroed(size_t count, size_t size);
  void* reallocate(void* block, size_t size);
  void release(void* block);
  // Frees cached blocks, largest first, until at most max_bytes stay cached.
  void trim(size_t max_bytes);

  const Stats& stats() const { return stats_; }
  size_t max_cached_bytes() const { return max_cached_bytes_; }

 private:
  struct Header;
  static constexpr size_t kClasses = 13;
  static const std::array<size_t, kClasses> kClassSizes;

  static size_t class_of(size_t size);
  // The usable size of a block this cache handed out.
  static size_t capacity(const Header& header);

  size_t max_cached_bytes_;
  std::array<Header*, kClasses> free_{};  // singly linked through Header::next
  Stats stats_;
};

}  // namespace trellis::http2
