// Reads the Prometheus text exposition format (what /metrics serves), so
// that integration tests can assert on counters:
//
//   double ok = metric_sum(text, "trellis_requests_total",
//                          {{"direction", "outbound"}, {"backend_name", "echo-v1"}, {"status_code", "200"}});
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace trellis::integration {

using Labels = std::map<std::string, std::string>;

struct MetricSample {
  std::string name;  // as written, with any _bucket/_sum/_count suffix
  Labels labels;
  double value = 0;
};

// Every sample line; comments and blank lines are skipped. Errors name the
// line: "metrics line 7: expected '=' after label name in 'x{a} 1'".
Result<std::vector<MetricSample>> parse_metrics(std::string_view text);

// The sum of the samples named `name` whose labels include every pair of
// `labels`; 0 when none matches. Malformed text counts as no samples.
double metric_sum(std::string_view text, std::string_view name, const Labels& labels = {});

// The lines of `text` that mention `name`, for failure messages.
std::string metric_lines(std::string_view text, std::string_view name);

}  // namespace trellis::integration
