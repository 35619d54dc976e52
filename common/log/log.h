// Structured logging: one JSON object per line on stderr (or a test sink).
//
//   log::info("listener started", {{"port", 15001}, {"worker", 0}});
//
// Repeats of the same message are rate-limited: at most `burst` lines per
// message per window; the first line after a suppressed stretch carries
// "suppressed": N so that nothing is silently lost.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace trellis::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

Result<Level> parse_level(std::string_view text);
std::string_view level_name(Level level);

class Field {
 public:
  enum class Kind { string, integer, unsigned_integer, real, boolean };

  Field(std::string_view key, std::string_view v) : key_(key), kind_(Kind::string), s_(v) {}
  Field(std::string_view key, const char* v) : key_(key), kind_(Kind::string), s_(v) {}
  Field(std::string_view key, const std::string& v) : key_(key), kind_(Kind::string), s_(v) {}
  Field(std::string_view key, bool v) : key_(key), kind_(Kind::boolean), b_(v) {}
  Field(std::string_view key, int v) : key_(key), kind_(Kind::integer), i_(v) {}
  Field(std::string_view key, long v) : key_(key), kind_(Kind::integer), i_(v) {}
  Field(std::string_view key, long long v) : key_(key), kind_(Kind::integer), i_(v) {}
  Field(std::string_view key, unsigned v) : key_(key), kind_(Kind::unsigned_integer), u_(v) {}
  Field(std::string_view key, unsigned long v) : key_(key), kind_(Kind::unsigned_integer), u_(v) {}
  Field(std::string_view key, unsigned long long v)
      : key_(key), kind_(Kind::unsigned_integer), u_(v) {}
  Field(std::string_view key, double v) : key_(key), kind_(Kind::real), d_(v) {}

  std::string_view key() const { return key_; }
  Kind kind() const { return kind_; }
  std::string_view string_value() const { return s_; }
  int64_t int_value() const { return i_; }
  uint64_t uint_value() const { return u_; }
  double real_value() const { return d_; }
  bool bool_value() const { return b_; }

 private:
  std::string_view key_;
  Kind kind_;
  std::string_view s_;
  union {
    int64_t i_;
    uint64_t u_;
    double d_;
    bool b_;
  };
};

using Fields = std::initializer_list<Field>;
using Sink = std::function<void(std::string_view line)>;
using Clock = std::function<std::chrono::system_clock::time_point()>;

struct RateLimit {
  int burst = 10;
  std::chrono::milliseconds window{1000};
};

// Process-wide settings; call from main() before threads start (the logger is
// thread-safe, its configuration is not meant to change under load).
void set_level(Level level);
Level level();
void set_component(std::string component);
void set_rate_limit(RateLimit limit);
// Replaces where lines go (default: stderr) and the clock (tests).
void set_sink(Sink sink);
void set_clock(Clock clock);
void reset_for_test();

bool enabled(Level level);
void write(Level level, std::string_view message, Fields fields = {});

inline void debug(std::string_view m, Fields f = {}) {
  if (enabled(Level::debug)) write(Level::debug, m, f);
}
inline void info(std::string_view m, Fields f = {}) {
  if (enabled(Level::info)) write(Level::info, m, f);
}
inline void warn(std::string_view m, Fields f = {}) {
  if (enabled(Level::warn)) write(Level::warn, m, f);
}
inline void error(std::string_view m, Fields f = {}) {
  if (enabled(Level::error)) write(Level::error, m, f);
}

}  // namespace trellis::log
