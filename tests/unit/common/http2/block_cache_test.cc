#include "common/http2/block_cache.h"

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

using trellis::http2::BlockCache;

namespace {

// What one cached block of `usable` bytes counts against the cap.
constexpr size_t kHeader = alignof(std::max_align_t);
size_t cached_size(size_t usable) { return kHeader + usable; }

bool aligned(const void* p) { return reinterpret_cast<uintptr_t>(p) % alignof(std::max_align_t) == 0; }

}  // namespace

TEST_CASE("a released block is handed out again for a request of its size class") {
  BlockCache cache(4096);
  void* a = cache.allocate(100);
  REQUIRE(a != nullptr);
  CHECK(aligned(a));
  std::memset(a, 0xab, 100);
  cache.release(a);
  CHECK(cache.stats().cached_blocks == 1);
  CHECK(cache.stats().cached_bytes == cached_size(128));

  void* b = cache.allocate(120);  // same class (97..128 bytes)
  CHECK(b == a);
  CHECK(cache.stats().allocations == 2);
  CHECK(cache.stats().heap_allocations == 1);
  CHECK(cache.stats().cached_blocks == 0);
  CHECK(cache.stats().cached_bytes == 0);

  void* c = cache.allocate(600);  // another class: the heap
  CHECK(c != a);
  CHECK(cache.stats().heap_allocations == 2);
  cache.release(b);
  cache.release(c);
  cache.release(nullptr);
}

TEST_CASE("the cache never holds more than its cap; the rest goes back to the heap") {
  BlockCache cache(2 * cached_size(128));
  std::vector<void*> blocks;
  for (int i = 0; i < 3; ++i) blocks.push_back(cache.allocate(128));
  for (void* p : blocks) cache.release(p);
  CHECK(cache.stats().cached_blocks == 2);
  CHECK(cache.stats().cached_bytes == 2 * cached_size(128));
  CHECK(cache.stats().cached_bytes <= cache.max_cached_bytes());

  // Only the two cached blocks come back without the heap.
  for (int i = 0; i < 3; ++i) blocks[i] = cache.allocate(128);
  CHECK(cache.stats().heap_allocations == 4);
  for (void* p : blocks) cache.release(p);
}

TEST_CASE("a zero cap caches nothing and blocks over the largest class are never cached") {
  BlockCache none(0);
  none.release(none.allocate(64));
  CHECK(none.stats().cached_blocks == 0);
  none.release(none.allocate(64));
  CHECK(none.stats().heap_allocations == 2);

  BlockCache cache(1 << 20);
  cache.release(cache.allocate(BlockCache::kLargestCachedBlock + 1));
  CHECK(cache.stats().cached_blocks == 0);
  cache.release(cache.allocate(BlockCache::kLargestCachedBlock));
  CHECK(cache.stats().cached_blocks == 1);
}

TEST_CASE("trim frees the largest cached blocks first, down to the bytes asked for") {
  BlockCache cache(1 << 20);
  void* small = cache.allocate(32);
  void* medium = cache.allocate(500);
  void* large = cache.allocate(2000);
  cache.release(small);
  cache.release(medium);
  cache.release(large);
  CHECK(cache.stats().cached_bytes == cached_size(32) + cached_size(512) + cached_size(2048));

  cache.trim(cached_size(32) + cached_size(512));
  CHECK(cache.stats().cached_blocks == 2);
  CHECK(cache.stats().cached_bytes == cached_size(32) + cached_size(512));
  cache.trim(cached_size(32));
  CHECK(cache.stats().cached_bytes == cached_size(32));
  CHECK(cache.allocate(20) == small);  // what is left is the small block
  cache.trim(0);
  CHECK(cache.stats().cached_bytes == 0);
  cache.release(small);
}

TEST_CASE("destroying the cache frees what it holds (LeakSanitizer checks it in the ASan build)") {
  auto cache = std::make_unique<BlockCache>(1 << 20);
  std::vector<void*> blocks;
  for (size_t size : {1, 40, 100, 300, 1000, 2000}) blocks.push_back(cache->allocate(size));
  for (void* p : blocks) cache->release(p);
  CHECK(cache->stats().cached_blocks == blocks.size());
  cache.reset();
}

TEST_CASE("calloc zeroes reused blocks and rejects sizes that overflow") {
  BlockCache cache(4096);
  auto* dirty = static_cast<unsigned char*>(cache.allocate(64));
  std::memset(dirty, 0xff, 64);
  cache.release(dirty);
  auto* zeroed = static_cast<unsigned char*>(cache.allocate_zeroed(8, 8));
  REQUIRE(zeroed == dirty);
  for (int i = 0; i < 64; ++i) CHECK(zeroed[i] == 0);
  cache.release(zeroed);
  CHECK(cache.allocate_zeroed(SIZE_MAX / 2, 4) == nullptr);
  CHECK(cache.allocate(SIZE_MAX - 8) == nullptr);
}

TEST_CASE("realloc keeps the contents, stays in place within the class and grows large blocks") {
  BlockCache cache(4096);
  void* fresh = cache.reallocate(nullptr, 10);  // like malloc
  CHECK(fresh != nullptr);
  cache.release(fresh);
  auto* p = static_cast<char*>(cache.allocate(40));
  std::memcpy(p, "0123456789", 10);
  CHECK(cache.reallocate(p, 48) == p);  // 33..48 bytes: same class
  CHECK(cache.reallocate(p, 8) == p);
  auto* grown = static_cast<char*>(cache.reallocate(p, 1000));
  REQUIRE(grown != nullptr);
  CHECK(aligned(grown));
  CHECK(std::memcmp(grown, "0123456789", 10) == 0);
  CHECK(cache.stats().cached_blocks == 2);  // `fresh` and the old block wait for reuse

  auto* large = static_cast<char*>(cache.reallocate(grown, 5000));
  REQUIRE(large != nullptr);
  CHECK(std::memcmp(large, "0123456789", 10) == 0);
  large = static_cast<char*>(cache.reallocate(large, 100000));
  REQUIRE(large != nullptr);
  CHECK(aligned(large));
  CHECK(std::memcmp(large, "0123456789", 10) == 0);
  cache.release(large);
  void* kept = cache.allocate(16);
  CHECK(cache.reallocate(kept, SIZE_MAX) == nullptr);  // like realloc: the block stays valid
  cache.release(kept);
}

#if defined(__SANITIZE_ADDRESS__)
TEST_CASE("a cached block is poisoned: ASan reports a use after release") {
  BlockCache cache(4096);
  void* p = cache.allocate(100);
  CHECK(__asan_address_is_poisoned(p) == 0);
  cache.release(p);
  CHECK(__asan_address_is_poisoned(p) != 0);
  CHECK(__asan_address_is_poisoned(static_cast<char*>(p) + 127) != 0);
  CHECK(cache.allocate(100) == p);
  CHECK(__asan_address_is_poisoned(p) == 0);
  cache.release(p);
}
#endif
