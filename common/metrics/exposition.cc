#include "common/metrics/exposition.h"

#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>

namespace trellis::metrics {

namespace {

// Text format 0.0.4: in HELP lines, backslash and line feed are escaped.
std::string escape_help(const std::string& help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string text_exposition(const Registry& registry,
                            const std::vector<const prometheus::Collectable*>& extra) {
  auto families = registry.collect();
  for (const auto* collectable : extra) {
    for (auto& family : collectable->Collect()) families.push_back(std::move(family));
  }
  // Stable output: families by name, children by labels (prometheus-cpp keeps
  // children in a hash map).
  std::stable_sort(families.begin(), families.end(),
                   [](const auto& a, const auto& b) { return a.name < b.name; });
  for (auto& family : families) {
    std::sort(family.metric.begin(), family.metric.end(),
              [](const auto& a, const auto& b) { return a.label < b.label; });
    family.help = escape_help(family.help);
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace trellis::metrics
