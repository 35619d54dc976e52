// Gateway API durations (GEP-2257), used by HTTPRoute timeouts and retries.
//
// A duration is one to four components, each 1-5 decimal digits followed by a
// unit h, m, s or ms, i.e. `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, read as Go's
// time.ParseDuration reads it: the components are summed, in any order, and a
// unit may repeat ("10s30m1h" is 1h30m10s, "100ms200ms300ms" is 600ms).
// "0s" (or "0h", "0m0s", ...) is the zero duration; callers treat zero as
// "disabled" where the API says so (timeouts).
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace trellis::gateway {

// Errors quote the input: "invalid duration '1d': unknown unit 'd' (want h, m, s or ms)".
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// The canonical form: descending, non-repeating units, each as large as
// possible ("2h30m", "1h500ms"), and "0s" for zero. Fails for negative
// durations and for more than 99999h59m59s999ms, which GEP-2257 cannot express.
Result<std::string> format_duration(std::chrono::milliseconds duration);

}  // namespace trellis::gateway
