// Kept in its own translation unit: with the replaced operators inlined next
// to their callers, GCC would flag malloc/free pairing as a new/delete mismatch.
#include "tests/support/allocation/allocation_counter.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<bool> counting{false};
std::atomic<size_t> allocations{0};
}  // namespace

void* operator new(size_t n) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace trellis::testing {

void start_counting_allocations() {
  allocations = 0;
  counting = true;
}

size_t stop_counting_allocations() {
  counting = false;
  return allocations.load();
}

}  // namespace trellis::testing
