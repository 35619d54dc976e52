#include "common/gateway/duration.h"

#include <doctest/doctest.h>

#include <string>

using std::chrono::milliseconds;
using trellis::gateway::format_duration;
using trellis::gateway::parse_duration;

namespace {

constexpr int64_t kS = 1000;
constexpr int64_t kM = 60 * kS;
constexpr int64_t kH = 60 * kM;

int64_t parse_ms(std::string_view text) {
  auto d = parse_duration(text);
  REQUIRE_MESSAGE(d.ok(), (d.ok() ? std::string() : d.error().message));
  return d->count();
}

std::string parse_error(std::string_view text) {
  auto d = parse_duration(text);
  REQUIRE_FALSE(d.ok());
  return d.error().message;
}

std::string canonical(std::string_view text) { return *format_duration(milliseconds(parse_ms(text))); }

}  // namespace

TEST_CASE("GEP-2257 parsing vectors and their canonical forms") {
  struct Vector {
    const char* input;
    const char* canonical;
    int64_t ms;
  };
  const Vector vectors[] = {
      {"0h", "0s", 0},
      {"0s", "0s", 0},
      {"0h0m0s", "0s", 0},
      {"1h", "1h", kH},
      {"30m", "30m", 30 * kM},
      {"10s", "10s", 10 * kS},
      {"500ms", "500ms", 500},
      {"2h30m", "2h30m", 2 * kH + 30 * kM},
      {"150m", "2h30m", 2 * kH + 30 * kM},
      {"7230s", "2h30s", 2 * kH + 30 * kS},
      {"1h30m10s", "1h30m10s", kH + 30 * kM + 10 * kS},
      {"10s30m1h", "1h30m10s", kH + 30 * kM + 10 * kS},
      {"100ms200ms300ms", "600ms", 600},
      {"1h30m", "1h30m", 90 * kM},
      // Any order, repeats allowed (Go's time.ParseDuration semantics).
      {"1m1s1ms1h", "1h1m1s1ms", kH + kM + kS + 1},
      {"1h2h20m10m", "3h30m", 3 * kH + 30 * kM},
      {"01h", "1h", kH},
      {"00060m", "1h", kH},
      {"1h500ms", "1h500ms", kH + 500},
      {"99999h", "99999h", 99999 * kH},
  };
  for (const Vector& v : vectors) {
    CAPTURE(v.input);
    CHECK(parse_ms(v.input) == v.ms);
    CHECK(canonical(v.input) == v.canonical);
  }
}

TEST_CASE("invalid durations are rejected with the reason") {
  CHECK(parse_error("") == "invalid duration '': empty (want e.g. 1h30m or 500ms)");
  CHECK(parse_error("1") == "invalid duration '1': missing unit after 1 (want h, m, s or ms)");
  CHECK(parse_error("1m1") == "invalid duration '1m1': missing unit after 1 (want h, m, s or ms)");
  CHECK(parse_error("1d") == "invalid duration '1d': unknown unit 'd' (want h, m, s or ms)");
  CHECK(parse_error("1us") == "invalid duration '1us': unknown unit 'us' (want h, m, s or ms)");
  CHECK(parse_error("1H") == "invalid duration '1H': unknown unit 'H' (want h, m, s or ms)");
  CHECK(parse_error("100000s") == "invalid duration '100000s': 100000 has more than 5 digits");
  CHECK(parse_error("999999h") == "invalid duration '999999h': 999999 has more than 5 digits");
  CHECK(parse_error("-1s") == "invalid duration '-1s': negative durations are not allowed");
  CHECK(parse_error("-15m") == "invalid duration '-15m': negative durations are not allowed");
  CHECK(parse_error("1.5s") == "invalid duration '1.5s': fractional values are not allowed");
  CHECK(parse_error("1.5h") == "invalid duration '1.5h': fractional values are not allowed");
  CHECK(parse_error("1h1h1h1h1h") == "invalid duration '1h1h1h1h1h': more than 4 components");
  CHECK(parse_error("1h30m10s20ms50h") ==
        "invalid duration '1h30m10s20ms50h': more than 4 components");
  CHECK(parse_error("h") == "invalid duration 'h': expected a digit at offset 0");
  CHECK(parse_error("+1s") == "invalid duration '+1s': expected a digit at offset 0");
  CHECK(parse_error("1h 30m") == "invalid duration '1h 30m': expected a digit at offset 2");
  CHECK(parse_error(" 1s") == "invalid duration ' 1s': expected a digit at offset 0");
  CHECK(parse_error("1s-1s") == "invalid duration '1s-1s': expected a digit at offset 2");
  // Long input is cut in the message.
  std::string long_input(100, '1');
  CHECK(parse_error(long_input) ==
        "invalid duration '11111111111111111111111111111111...': " + long_input +
            " has more than 5 digits");
}

TEST_CASE("formatting follows the GEP-2257 vectors") {
  CHECK(*format_duration(milliseconds(0)) == "0s");
  CHECK(*format_duration(milliseconds(kH)) == "1h");
  CHECK(*format_duration(milliseconds(30 * kM)) == "30m");
  CHECK(*format_duration(milliseconds(10 * kS)) == "10s");
  CHECK(*format_duration(milliseconds(500)) == "500ms");
  CHECK(*format_duration(milliseconds(2 * kH + 30 * kM)) == "2h30m");
  CHECK(*format_duration(milliseconds(kH + 30 * kM + 10 * kS)) == "1h30m10s");
  CHECK(*format_duration(milliseconds(2 * kH + 600)) == "2h600ms");
  CHECK(*format_duration(milliseconds(2 * kH + 30 * kM + 600)) == "2h30m600ms");
  CHECK(*format_duration(milliseconds(2 * kH + 30 * kM + 10 * kS + 600)) == "2h30m10s600ms");
  CHECK(*format_duration(std::chrono::seconds(30)) == "30s");
  CHECK(*format_duration(std::chrono::hours(240)) == "240h");
  CHECK(*format_duration(milliseconds(99999 * kH + 59 * kM + 59 * kS + 999)) == "99999h59m59s999ms");
}

TEST_CASE("durations GEP-2257 cannot express are not formatted") {
  CHECK(format_duration(milliseconds(-1)).error().message ==
        "negative durations cannot be formatted (GEP-2257)");
  CHECK(format_duration(std::chrono::hours(24 * 10000)).error().message ==
        "duration of 864000000000ms exceeds 99999h59m59s999ms (GEP-2257)");
  // Parsable but beyond the canonical range: four maximal components.
  auto big = parse_duration("99999h99999m99999s99999ms");
  REQUIRE(big.ok());
  CHECK(big->count() == 99999 * kH + 99999 * kM + 99999 * kS + 99999);
  CHECK_FALSE(format_duration(*big).ok());
}
