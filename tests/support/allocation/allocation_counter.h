// Counts heap allocations (the test binary replaces operator new) so that tests
// can prove a code path allocates nothing.
#pragma once

#include <cstddef>

namespace trellis::testing {

void start_counting_allocations();
// Stops counting; returns the allocations made since start_counting_allocations().
size_t stop_counting_allocations();

}  // namespace trellis::testing
