#include "common/log/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <ctime>
#include <mutex>
#include <string>
#include <unordered_map>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "common/base/utf8.h"

namespace trellis::log {
namespace {

// Bounded so that a flood of distinct messages cannot grow memory without limit.
constexpr size_t kMaxTrackedMessages = 1024;

struct Repeat {
  std::chrono::system_clock::time_point window_start;
  int count = 0;
  uint64_t suppressed = 0;
};

struct State {
  std::atomic<int> level{static_cast<int>(Level::info)};
  std::mutex mu;
  std::string component;
  RateLimit limit;
  Sink sink;
  Clock clock;
  std::unordered_map<std::string, Repeat> repeats;
};

State& state() {
  static State s;
  return s;
}

void write_stderr(std::string_view line) {
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void format_time(std::chrono::system_clock::time_point t, char* out, size_t size) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char base[32];
  strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, size, "%s.%03dZ", base, static_cast<int>(ms % 1000));
}

void write_string(rapidjson::Writer<rapidjson::StringBuffer>& w, std::string_view v) {
  std::string scratch;
  std::string_view s = valid_utf8(v, scratch);
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

void write_field(rapidjson::Writer<rapidjson::StringBuffer>& w, const Field& f) {
  std::string scratch;
  std::string_view key = valid_utf8(f.key(), scratch);
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  switch (f.kind()) {
    case Field::Kind::string:
      write_string(w, f.string_value());
      break;
    case Field::Kind::integer:
      w.Int64(f.int_value());
      break;
    case Field::Kind::unsigned_integer:
      w.Uint64(f.uint_value());
      break;
    case Field::Kind::real:
      // JSON has no NaN or infinity.
      if (std::isfinite(f.real_value())) {
        w.Double(f.real_value());
      } else {
        w.Null();
      }
      break;
    case Field::Kind::boolean:
      w.Bool(f.bool_value());
      break;
  }
}

}  // namespace

Result<Level> parse_level(std::string_view text) {
  if (text == "debug") return Level::debug;
  if (text == "info") return Level::info;
  if (text == "warn" || text == "warning") return Level::warn;
  if (text == "error") return Level::error;
  return make_error("unknown log level '" + std::string(text) + "' (want debug, info, warn or error)");
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

void set_level(Level level) { state().level.store(static_cast<int>(level)); }
Level level() { return static_cast<Level>(state().level.load(std::memory_order_relaxed)); }

void set_component(std::string component) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().component = std::move(component);
}

void set_rate_limit(RateLimit limit) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().limit = limit;
}

void set_sink(Sink sink) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().sink = std::move(sink);
}

void set_clock(Clock clock) {
  std::lock_guard<std::mutex> lock(state().mu);
  state().clock = std::move(clock);
}

void reset_for_test() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.level.store(static_cast<int>(Level::info));
  s.component.clear();
  s.limit = RateLimit{};
  s.sink = nullptr;
  s.clock = nullptr;
  s.repeats.clear();
}

bool enabled(Level l) {
  return static_cast<int>(l) >= state().level.load(std::memory_order_relaxed);
}

void write(Level lvl, std::string_view message, Fields fields) {
  State& s = state();
  std::string line;
  Sink sink;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto now = s.clock ? s.clock() : std::chrono::system_clock::now();

    if (s.repeats.size() >= kMaxTrackedMessages) s.repeats.clear();
    Repeat& r = s.repeats[std::string(message)];
    if (r.count == 0 || now - r.window_start >= s.limit.window) {
      r.window_start = now;
      r.count = 0;
    }
    if (r.count >= s.limit.burst) {
      ++r.suppressed;
      return;
    }
    ++r.count;
    uint64_t suppressed = r.suppressed;
    r.suppressed = 0;

    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    char ts[48];
    format_time(now, ts, sizeof ts);
    w.StartObject();
    w.Key("ts");
    w.String(ts);
    w.Key("level");
    auto name = level_name(lvl);
    w.String(name.data(), static_cast<rapidjson::SizeType>(name.size()));
    if (!s.component.empty()) {
      w.Key("component");
      w.String(s.component);
    }
    w.Key("msg");
    write_string(w, message);
    for (const Field& f : fields) write_field(w, f);
    if (suppressed > 0) {
      w.Key("suppressed");
      w.Uint64(suppressed);
    }
    w.EndObject();
    line.assign(buf.GetString(), buf.GetSize());
    line.push_back('\n');
    sink = s.sink;
  }
  if (sink) {
    sink(line);
  } else {
    write_stderr(line);
  }
}

}  // namespace trellis::log
