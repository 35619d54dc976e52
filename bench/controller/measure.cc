#include "bench/controller/measure.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <sstream>

namespace trellis::bench::controller {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

// A whole number, or nullopt.
std::optional<uint64_t> whole(std::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

// A floating-point number as Prometheus writes it ("0.5", "1e-05", "+Inf").
std::optional<double> real(std::string_view text) {
  if (text == "+Inf" || text == "Inf") return std::numeric_limits<double>::infinity();
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string s(text);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || errno == ERANGE || std::isnan(v)) return std::nullopt;
  return v;
}

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    out.push_back(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return make_error(path + ": " + errno_text(errno));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Result<Memory> parse_status(std::string_view text) {
  Memory m;
  struct Field {
    const char* name;
    uint64_t* out;
    bool seen;
  } fields[] = {{"VmRSS", &m.vm_rss_kib, false},
                {"RssAnon", &m.rss_anon_kib, false},
                {"RssFile", &m.rss_file_kib, false},
                {"VmHWM", &m.vm_hwm_kib, false}};
  for (std::string_view line : lines_of(text)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    for (Field& f : fields) {
      if (key != f.name) continue;
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
      std::string_view number = value.substr(0, value.find(' '));
      auto v = whole(number);
      if (!v || value.substr(number.size()) != " kB") {
        return make_error("status: field '" + std::string(f.name) + "': invalid value '" +
                          std::string(value) + "'");
      }
      *f.out = *v;
      f.seen = true;
    }
  }
  for (const Field& f : fields) {
    if (!f.seen) return make_error("status: missing field '" + std::string(f.name) + "'");
  }
  return m;
}

Result<double> parse_stat_cpu_seconds(std::string_view text, long ticks_per_second) {
  // The command (field 2) is in parentheses and may contain anything, ')' too.
  size_t close = text.rfind(')');
  if (close == std::string_view::npos) return make_error("stat: no ')' after the command");
  std::string_view rest = text.substr(close + 1);
  std::vector<std::string_view> fields;
  while (!rest.empty()) {
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\n')) rest.remove_prefix(1);
    if (rest.empty()) break;
    size_t end = rest.find_first_of(" \n");
    fields.push_back(rest.substr(0, end));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  // After the command: state (3), ..., utime (14), stime (15).
  if (fields.size() < 13) {
    return make_error("stat: expected at least 13 fields after the command, got " +
                      std::to_string(fields.size()));
  }
  auto utime = whole(fields[11]);
  if (!utime) return make_error("stat: field utime: invalid value '" + std::string(fields[11]) + "'");
  auto stime = whole(fields[12]);
  if (!stime) return make_error("stat: field stime: invalid value '" + std::string(fields[12]) + "'");
  if (ticks_per_second <= 0) return make_error("stat: ticks per second must be positive");
  return static_cast<double>(*utime + *stime) / static_cast<double>(ticks_per_second);
}

Result<double> parse_schedstat_wait_seconds(std::string_view text) {
  std::string_view rest = text;
  while (!rest.empty() && rest.back() == '\n') rest.remove_suffix(1);
  std::vector<uint64_t> numbers;
  std::string_view all = rest;
  while (!rest.empty()) {
    size_t end = rest.find(' ');
    auto v = whole(rest.substr(0, end));
    if (!v) break;
    numbers.push_back(*v);
    if (end == std::string_view::npos) {
      rest = {};
      break;
    }
    rest.remove_prefix(end + 1);
  }
  if (numbers.size() != 3 || !rest.empty()) {
    return make_error("schedstat: expected 3 numbers, got '" + std::string(all) + "'");
  }
  return static_cast<double>(numbers[1]) / 1e9;
}

Result<double> read_runqueue_wait_seconds(pid_t pid) {
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* tasks = ::opendir(dir.c_str());
  if (tasks == nullptr) return make_error(dir + ": " + errno_text(errno));
  double total = 0;
  Status failure = ok_status();
  while (dirent* entry = ::readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::string path = dir + "/" + entry->d_name + "/schedstat";
    auto text = read_small_file(path);
    if (!text.ok()) continue;  // the thread exited meanwhile
    auto wait = parse_schedstat_wait_seconds(*text);
    if (!wait.ok()) {
      failure = make_error(path + ": " + wait.error().message);
      break;
    }
    total += *wait;
  }
  ::closedir(tasks);
  if (!failure.ok()) return failure.error();
  return total;
}

Result<Memory> read_memory(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  auto text = read_small_file(path);
  if (!text.ok()) return text.error();
  auto m = parse_status(*text);
  if (!m.ok()) return make_error(path + ": " + m.error().message);
  return m;
}

Result<double> read_cpu_seconds(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/stat";
  auto text = read_small_file(path);
  if (!text.ok()) return text.error();
  auto s = parse_stat_cpu_seconds(*text, ::sysconf(_SC_CLK_TCK));
  if (!s.ok()) return make_error(path + ": " + s.error().message);
  return s;
}

Result<Histogram> find_histogram(std::string_view exposition, std::string_view name) {
  const std::string where = "histogram '" + std::string(name) + "'";
  const std::string bucket_prefix = std::string(name) + "_bucket{le=\"";
  const std::string sum_prefix = std::string(name) + "_sum ";
  const std::string count_prefix = std::string(name) + "_count ";
  Histogram h;
  bool have_sum = false, have_count = false;
  for (std::string_view line : lines_of(exposition)) {
    if (line.substr(0, bucket_prefix.size()) == bucket_prefix) {
      std::string_view rest = line.substr(bucket_prefix.size());
      size_t end = rest.find("\"} ");
      auto bound = end == std::string_view::npos ? std::nullopt : real(rest.substr(0, end));
      if (!bound) {
        return make_error(where + ": line '" + std::string(line) + "': invalid bound '" +
                          std::string(rest.substr(0, rest.find('"'))) + "'");
      }
      auto value = real(rest.substr(end + 3));
      if (!value) {
        return make_error(where + ": line '" + std::string(line) + "': invalid value '" +
                          std::string(rest.substr(end + 3)) + "'");
      }
      h.buckets.emplace_back(*bound, *value);
    } else if (line.substr(0, sum_prefix.size()) == sum_prefix) {
      auto v = real(line.substr(sum_prefix.size()));
      if (!v) return make_error(where + ": line '" + std::string(line) + "': invalid value");
      h.sum = *v;
      have_sum = true;
    } else if (line.substr(0, count_prefix.size()) == count_prefix) {
      auto v = real(line.substr(count_prefix.size()));
      if (!v) return make_error(where + ": line '" + std::string(line) + "': invalid value");
      h.count = *v;
      have_count = true;
    }
  }
  if (h.buckets.empty()) return make_error(where + ": no buckets");
  if (!have_sum) return make_error(where + ": missing " + std::string(name) + "_sum");
  if (!have_count) return make_error(where + ": missing " + std::string(name) + "_count");
  std::sort(h.buckets.begin(), h.buckets.end());
  return h;
}

std::optional<double> find_value(std::string_view exposition, std::string_view series) {
  for (std::string_view line : lines_of(exposition)) {
    if (line.size() > series.size() && line.substr(0, series.size()) == series &&
        line[series.size()] == ' ') {
      return real(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

double sum_values(std::string_view exposition, std::string_view name) {
  double total = 0;
  for (std::string_view line : lines_of(exposition)) {
    if (line.size() <= name.size() || line.substr(0, name.size()) != name) continue;
    char next = line[name.size()];
    size_t value_at;
    if (next == ' ') {
      value_at = name.size() + 1;
    } else if (next == '{') {
      size_t close = line.rfind("} ");
      if (close == std::string_view::npos) continue;
      value_at = close + 2;
    } else {
      continue;
    }
    if (auto v = real(line.substr(value_at))) total += *v;
  }
  return total;
}

Histogram difference(const Histogram& after, const Histogram& before) {
  if (after.buckets.size() != before.buckets.size()) return after;
  Histogram d;
  for (size_t i = 0; i < after.buckets.size(); ++i) {
    if (after.buckets[i].first != before.buckets[i].first) return after;
    d.buckets.emplace_back(after.buckets[i].first, after.buckets[i].second - before.buckets[i].second);
  }
  d.sum = after.sum - before.sum;
  d.count = after.count - before.count;
  return d;
}

double quantile(const Histogram& h, double q) {
  if (h.buckets.empty()) return 0;
  double total = h.buckets.back().second;
  if (total <= 0) return 0;
  double rank = std::clamp(q, 0.0, 1.0) * total;
  double lower_bound = 0, lower_count = 0;
  for (const auto& [bound, count] : h.buckets) {
    if (count >= rank) {
      if (std::isinf(bound)) return lower_bound;  // the highest finite bound
      if (count == lower_count) return bound;
      return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count);
    }
    lower_bound = bound;
    lower_count = count;
  }
  return lower_bound;
}

Result<HttpAnswer> http_get(const std::string& ip, uint16_t port, const std::string& path,
                            std::chrono::milliseconds timeout) {
  const std::string where = "GET http://" + ip + ":" + std::to_string(port) + path;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &a.sin_addr) != 1) {
    return make_error(where + ": not an IPv4 address");
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error(where + ": socket: " + errno_text(errno));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::close(fd);
    return make_error(where + ": " + what +
                      (e == EAGAIN || e == EWOULDBLOCK ? "timed out" : errno_text(e)));
  };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return fail("");
  std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + ip + "\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return fail("send: ");
  }
  std::string response;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      response.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      return fail("recv: ");
    }
  }
  ::close(fd);
  if (response.compare(0, 9, "HTTP/1.1 ") != 0 && response.compare(0, 9, "HTTP/1.0 ") != 0) {
    return make_error(where + ": not an HTTP response");
  }
  HttpAnswer answer;
  answer.status = std::atoi(response.c_str() + 9);
  size_t head_end = response.find("\r\n\r\n");
  if (head_end != std::string::npos) answer.body = response.substr(head_end + 4);
  return answer;
}

Result<std::chrono::system_clock::time_point> log_time(std::string_view log,
                                                      std::string_view message) {
  const std::string msg_field = "\"msg\":\"" + std::string(message) + "\"";
  size_t number = 0;
  for (std::string_view line : lines_of(log)) {
    ++number;
    if (line.find(msg_field) == std::string_view::npos) continue;
    const std::string_view key = "\"ts\":\"";
    size_t at = line.find(key);
    std::string_view ts = at == std::string_view::npos ? std::string_view()
                                                       : line.substr(at + key.size(), 24);
    // 2026-01-02T03:04:05.678Z
    struct tm tm {};
    int ms = 0;
    char z = 0;
    int n = ts.size() == 24 ? std::sscanf(std::string(ts).c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c",
                                          &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                                          &tm.tm_min, &tm.tm_sec, &ms, &z)
                            : 0;
    if (n != 8 || z != 'Z') {
      return make_error("log line " + std::to_string(number) + ": invalid ts '" + std::string(ts) + "'");
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t secs = ::timegm(&tm);
    return std::chrono::system_clock::from_time_t(secs) + std::chrono::milliseconds(ms);
  }
  return make_error("no log line with msg '" + std::string(message) + "'");
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  double rank = std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size()));
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

}  // namespace trellis::bench::controller
