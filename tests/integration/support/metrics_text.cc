#include "tests/integration/support/metrics_text.h"

#include <cstdlib>

namespace trellis::integration {
namespace {

bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

// Parses `{a="x",b="y"}` starting at text[pos] == '{'; leaves pos after '}'.
Result<Labels> parse_labels(std::string_view line, size_t& pos) {
  Labels labels;
  ++pos;  // '{'
  for (;;) {
    while (pos < line.size() && line[pos] == ' ') ++pos;
    if (pos < line.size() && line[pos] == '}') {
      ++pos;
      return labels;
    }
    size_t start = pos;
    while (pos < line.size() && name_char(line[pos], pos == start)) ++pos;
    if (pos == start) return make_error("expected a label name");
    std::string name(line.substr(start, pos - start));
    if (pos >= line.size() || line[pos] != '=') return make_error("expected '=' after label name");
    ++pos;
    if (pos >= line.size() || line[pos] != '"') return make_error("expected '\"' before label value");
    ++pos;
    std::string value;
    for (;;) {
      if (pos >= line.size()) return make_error("unterminated label value");
      char c = line[pos++];
      if (c == '"') break;
      if (c == '\\') {
        if (pos >= line.size()) return make_error("unterminated label value");
        char escaped = line[pos++];
        value += escaped == 'n' ? '\n' : escaped;
        continue;
      }
      value += c;
    }
    labels[name] = value;
    if (pos < line.size() && line[pos] == ',') ++pos;
  }
}

Result<MetricSample> parse_line(std::string_view line) {
  MetricSample sample;
  size_t pos = 0;
  while (pos < line.size() && name_char(line[pos], pos == 0)) ++pos;
  if (pos == 0) return make_error("expected a metric name");
  sample.name = std::string(line.substr(0, pos));
  if (pos < line.size() && line[pos] == '{') {
    auto labels = parse_labels(line, pos);
    if (!labels.ok()) return labels.error();
    sample.labels = std::move(*labels);
  }
  if (pos >= line.size() || line[pos] != ' ') return make_error("expected ' ' before the value");
  while (pos < line.size() && line[pos] == ' ') ++pos;
  size_t end = line.find(' ', pos);  // an optional timestamp follows
  std::string value(line.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
  char* parsed_end = nullptr;
  sample.value = std::strtod(value.c_str(), &parsed_end);
  if (value.empty() || parsed_end != value.c_str() + value.size()) {
    return make_error("malformed value '" + value + "'");
  }
  return sample;
}

}  // namespace

Result<std::vector<MetricSample>> parse_metrics(std::string_view text) {
  std::vector<MetricSample> samples;
  int number = 0;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto sample = parse_line(line);
    if (!sample.ok()) {
      return make_error("metrics line " + std::to_string(number) + ": " + sample.error().message + " in '" +
                        std::string(line) + "'");
    }
    samples.push_back(std::move(*sample));
  }
  return samples;
}

double metric_sum(std::string_view text, std::string_view name, const Labels& labels) {
  auto samples = parse_metrics(text);
  if (!samples.ok()) return 0;
  double sum = 0;
  for (const MetricSample& s : *samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [key, value] : labels) {
      auto it = s.labels.find(key);
      if (it == s.labels.end() || it->second != value) {
        match = false;
        break;
      }
    }
    if (match) sum += s.value;
  }
  return sum;
}

std::string metric_lines(std::string_view text, std::string_view name) {
  std::string out;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (!line.empty() && line.front() != '#' && line.find(name) != std::string_view::npos) {
      out += std::string(line) + "\n";
    }
  }
  return out;
}

}  // namespace trellis::integration
