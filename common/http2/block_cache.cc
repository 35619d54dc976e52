#include "common/http2/block_cache.h"

#include <cstdlib>
#include <cstring>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
// A cached block is freed memory as far as nghttp2 is concerned: ASan reports
// any use of it.
#define TRELLIS_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define TRELLIS_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define TRELLIS_POISON(p, n) ((void)(p), (void)(n))
#define TRELLIS_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace trellis::http2 {

// Precedes every block; its size keeps the block aligned like malloc's.
struct alignas(alignof(std::max_align_t)) BlockCache::Header {
  union {
    Header* next;        // while cached
    size_t direct_size;  // size_class == kClasses: the size malloc was asked for
  };
  size_t size_class;
};

// Steps of 1.5x: a block wastes at most a third of its class.
const std::array<size_t, BlockCache::kClasses> BlockCache::kClassSizes = {
    32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, BlockCache::kLargestCachedBlock};

BlockCache::BlockCache(size_t max_cached_bytes) : max_cached_bytes_(max_cached_bytes) {}

BlockCache::~BlockCache() { trim(0); }

void BlockCache::trim(size_t max_bytes) {
  for (size_t c = kClasses; c-- > 0 && stats_.cached_bytes > max_bytes;) {
    while (stats_.cached_bytes > max_bytes && free_[c] != nullptr) {
      Header* h = free_[c];
      TRELLIS_UNPOISON(h + 1, kClassSizes[c]);
      free_[c] = h->next;
      stats_.cached_bytes -= sizeof(Header) + kClassSizes[c];
      --stats_.cached_blocks;
      std::free(h);
    }
  }
}

size_t BlockCache::class_of(size_t size) {
  for (size_t c = 0; c < kClasses; ++c) {
    if (size <= kClassSizes[c]) return c;
  }
  return kClasses;
}

size_t BlockCache::capacity(const Header& header) {
  return header.size_class < kClasses ? kClassSizes[header.size_class] : header.direct_size;
}

void* BlockCache::allocate(size_t size) {
  size_t c = class_of(size);
  if (c < kClasses && free_[c] != nullptr) {
    ++stats_.allocations;
    Header* h = free_[c];
    free_[c] = h->next;
    stats_.cached_bytes -= sizeof(Header) + kClassSizes[c];
    --stats_.cached_blocks;
    TRELLIS_UNPOISON(h + 1, kClassSizes[c]);
    return h + 1;
  }
  size_t usable = c < kClasses ? kClassSizes[c] : size;
  if (usable > SIZE_MAX - sizeof(Header)) return nullptr;
  auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + usable));
  if (h == nullptr) return nullptr;
  ++stats_.allocations;
  ++stats_.heap_allocations;
  h->size_class = c;
  if (c == kClasses) h->direct_size = size;
  return h + 1;
}

void* BlockCache::allocate_zeroed(size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size) return nullptr;
  void* p = allocate(count * size);
  if (p != nullptr) std::memset(p, 0, count * size);
  return p;
}

void* BlockCache::reallocate(void* block, size_t size) {
  if (block == nullptr) return allocate(size);
  Header* h = static_cast<Header*>(block) - 1;
  size_t old_capacity = capacity(*h);
  if (size <= old_capacity) return block;
  if (h->size_class == kClasses) {
    // Large buffers grow in place when malloc can.
    if (size > SIZE_MAX - sizeof(Header)) return nullptr;
    auto* grown = static_cast<Header*>(std::realloc(h, sizeof(Header) + size));
    if (grown == nullptr) return nullptr;
    ++stats_.allocations;
    ++stats_.heap_allocations;
    grown->direct_size = size;
    return grown + 1;
  }
  void* moved = allocate(size);
  if (moved == nullptr) return nullptr;
  std::memcpy(moved, block, old_capacity);
  release(block);
  return moved;
}

void BlockCache::release(void* block) {
  if (block == nullptr) return;
  Header* h = static_cast<Header*>(block) - 1;
  size_t c = h->size_class;
  if (c < kClasses && stats_.cached_bytes + sizeof(Header) + kClassSizes[c] <= max_cached_bytes_) {
    h->next = free_[c];
    free_[c] = h;
    stats_.cached_bytes += sizeof(Header) + kClassSizes[c];
    ++stats_.cached_blocks;
    TRELLIS_POISON(block, kClassSizes[c]);
    return;
  }
  std::free(h);
}

}  // namespace trellis::http2
