#include "common/gateway/duration.h"

#include <cstdint>

namespace trellis::gateway {
namespace {

constexpr int kMaxComponents = 4;
constexpr size_t kMaxDigits = 5;
constexpr int64_t kMsPerSecond = 1000;
constexpr int64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr int64_t kMsPerHour = 60 * kMsPerMinute;
constexpr int64_t kMaxFormattable =
    99999 * kMsPerHour + 59 * kMsPerMinute + 59 * kMsPerSecond + 999;
// Longer inputs are cut in error messages; a valid duration has at most 28 characters.
constexpr size_t kMaxQuoted = 32;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

Error invalid(std::string_view text, std::string_view reason) {
  std::string quoted = text.size() > kMaxQuoted ? std::string(text.substr(0, kMaxQuoted)) + "..."
                                                : std::string(text);
  return make_error("invalid duration '" + quoted + "': " + std::string(reason));
}

}  // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return invalid(text, "empty (want e.g. 1h30m or 500ms)");
  int64_t total = 0;
  int components = 0;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '-' && i == 0) return invalid(text, "negative durations are not allowed");
    if (!is_digit(text[i])) {
      return invalid(text, "expected a digit at offset " + std::to_string(i));
    }
    size_t start = i;
    while (i < text.size() && is_digit(text[i])) ++i;
    std::string_view digits = text.substr(start, i - start);
    if (i < text.size() && text[i] == '.') {
      return invalid(text, "fractional values are not allowed");
    }
    if (digits.size() > kMaxDigits) {
      return invalid(text, std::string(digits) + " has more than 5 digits");
    }
    size_t unit_start = i;
    while (i < text.size() && is_letter(text[i])) ++i;
    std::string_view unit = text.substr(unit_start, i - unit_start);
    if (unit.empty()) {
      return invalid(text, "missing unit after " + std::string(digits) + " (want h, m, s or ms)");
    }
    int64_t scale = unit == "h" ? kMsPerHour
                    : unit == "m" ? kMsPerMinute
                    : unit == "s" ? kMsPerSecond
                    : unit == "ms" ? 1
                                   : 0;
    if (scale == 0) {
      return invalid(text, "unknown unit '" + std::string(unit) + "' (want h, m, s or ms)");
    }
    if (++components > kMaxComponents) return invalid(text, "more than 4 components");
    int64_t value = 0;
    for (char c : digits) value = value * 10 + (c - '0');
    total += value * scale;
  }
  return std::chrono::milliseconds(total);
}

Result<std::string> format_duration(std::chrono::milliseconds duration) {
  int64_t ms = duration.count();
  if (ms < 0) return make_error("negative durations cannot be formatted (GEP-2257)");
  if (ms > kMaxFormattable) {
    return make_error("duration of " + std::to_string(ms) +
                      "ms exceeds 99999h59m59s999ms (GEP-2257)");
  }
  if (ms == 0) return std::string("0s");
  std::string out;
  auto put = [&](int64_t n, const char* unit) {
    if (n == 0) return;
    out += std::to_string(n);
    out += unit;
  };
  put(ms / kMsPerHour, "h");
  put(ms % kMsPerHour / kMsPerMinute, "m");
  put(ms % kMsPerMinute / kMsPerSecond, "s");
  put(ms % kMsPerSecond, "ms");
  return out;
}

}  // namespace trellis::gateway
