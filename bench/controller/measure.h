// What the controller scale bench reads about the controller: its memory and
// CPU from /proc, its Prometheus histograms from the admin port, and the
// percentiles of what it measured itself.
//
// Threading: free functions, safe from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/result.h"

namespace trellis::bench::controller {

// /proc/<pid>/status, in KiB.
struct Memory {
  uint64_t vm_rss_kib = 0;
  uint64_t rss_anon_kib = 0;
  uint64_t rss_file_kib = 0;
  uint64_t vm_hwm_kib = 0;
};

// Errors: "status: missing field 'VmRSS'", "status: field 'VmHWM': invalid value 'x kB'".
Result<Memory> parse_status(std::string_view text);
// utime + stime of /proc/<pid>/stat in seconds. Errors: "stat: no ')' after the command",
// "stat: expected at least 13 fields after the command, got 3", "stat: field utime: invalid
// value 'x'".
Result<double> parse_stat_cpu_seconds(std::string_view text, long ticks_per_second);

// The run-queue wait in /proc/<pid>/task/<tid>/schedstat ("<on-CPU ns>
// <waiting ns> <timeslices>"): time runnable but not running, in seconds.
// Error: "schedstat: expected 3 numbers, got '1 x'".
Result<double> parse_schedstat_wait_seconds(std::string_view text);

// Read from /proc; errors name the file ("/proc/1234/status: No such file or directory").
Result<Memory> read_memory(pid_t pid);
Result<double> read_cpu_seconds(pid_t pid);
// Summed over the process's threads.
Result<double> read_runqueue_wait_seconds(pid_t pid);

// A Prometheus histogram without labels (other than `le`).
struct Histogram {
  std::vector<std::pair<double, double>> buckets;  // (upper bound, cumulative count), +Inf last
  double sum = 0;
  double count = 0;
};

// The histogram `name` in a text exposition. Errors: "histogram 'x': no
// buckets", "histogram 'x': missing x_sum", "histogram 'x': line 'x_bucket{le="a"} 1':
// invalid bound 'a'".
Result<Histogram> find_histogram(std::string_view exposition, std::string_view name);
// The value of one series ("trellis_controller_streams",
// "trellis_kube_relists_total{resource=\"pods\"}"); nullopt when absent.
std::optional<double> find_value(std::string_view exposition, std::string_view series);
// The sum of every series of metric `name`, whatever its labels (0 when absent).
double sum_values(std::string_view exposition, std::string_view name);
// after − before, bucket by bucket (the bounds must match; otherwise `after`).
Histogram difference(const Histogram& after, const Histogram& before);
// Prometheus' histogram_quantile: linear within the bucket; the highest
// finite bound when the quantile falls into +Inf; 0 for an empty histogram.
double quantile(const Histogram& h, double q);

struct HttpAnswer {
  int status = 0;
  std::string body;
};
// A blocking HTTP/1.0 GET http://<ip>:<port><path> (the admin server's).
// Errors: "GET http://127.0.0.1:15011/ready: Connection refused", "...: timed out".
Result<HttpAnswer> http_get(const std::string& ip, uint16_t port, const std::string& path,
                            std::chrono::milliseconds timeout);

// The "ts" of the first line of a trellis log (one JSON object a line) whose
// "msg" is `message`: "2026-01-02T03:04:05.678Z", UTC, millisecond precision.
// Errors: "no log line with msg 'x'", "log line 3: invalid ts '...'".
Result<std::chrono::system_clock::time_point> log_time(std::string_view log, std::string_view message);

// The nearest-rank percentile (p in [0, 100]) of `values`; 0 when empty.
double percentile(std::vector<double> values, double p);

}  // namespace trellis::bench::controller
