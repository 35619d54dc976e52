#include "common/metrics/metrics.h"

#include <prometheus/collectable.h>

#include <cstdio>
#include <optional>
#include <set>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace trellis::metrics {

namespace {

// Names in messages may be anything a caller passed; keep the message printable.
std::string quoted(std::string_view s) {
  std::string out = "'";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out + "'";
}

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

Status check_name(std::string_view kind, std::string_view name, bool colon_allowed) {
  if (name.empty()) return make_error(std::string(kind) + " is empty");
  if (is_digit(name[0])) {
    return make_error(std::string(kind) + " " + quoted(name) + " must not start with a digit");
  }
  if (name.substr(0, 2) == "__") {
    return make_error(std::string(kind) + " " + quoted(name) + " uses the reserved prefix '__'");
  }
  for (char c : name) {
    if (!is_letter(c) && !is_digit(c) && c != '_' && !(colon_allowed && c == ':')) {
      return make_error(std::string(kind) + " " + quoted(name) + " contains " +
                        quoted(std::string_view(&c, 1)) + " (allowed: " +
                        (colon_allowed ? "a-z A-Z 0-9 _ :" : "a-z A-Z 0-9 _") + ")");
    }
  }
  return ok_status();
}

// The text format is UTF-8; one bad label value would make Prometheus reject
// the whole scrape.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      extra = 1, cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      extra = 2, cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF.
    if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

Result<prometheus::Labels> make_labels(const std::string& family,
                                       const std::vector<std::string>& names,
                                       const std::vector<std::string>& values) {
  if (values.size() != names.size()) {
    return make_error(family + ": expected " + std::to_string(names.size()) +
                      " label values, got " + std::to_string(values.size()));
  }
  prometheus::Labels labels;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!valid_utf8(values[i])) {
      return make_error(family + ": value of label " + names[i] + " is not valid UTF-8");
    }
    labels.emplace(names[i], values[i]);
  }
  return labels;
}

Error unregistered() { return make_error("metric family is not registered"); }

}  // namespace

Status check_metric_name(std::string_view name) { return check_name("metric name", name, true); }
Status check_label_name(std::string_view name) { return check_name("label name", name, false); }

std::vector<double> proxy_duration_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::vector<double> controller_duration_buckets() {
  return {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

namespace detail {

template <typename Metric>
struct FamilyState {
  std::shared_ptr<prometheus::Registry> owner;  // keeps `family` alive
  prometheus::Family<Metric>* family = nullptr;
  std::string name;
  std::vector<std::string> label_names;
  std::vector<double> buckets;  // histograms only

  std::mutex mutex;
  std::unordered_map<Metric*, size_t> refs;

  Metric* acquire(const prometheus::Labels& labels) {
    std::lock_guard<std::mutex> lock(mutex);
    Metric* metric;
    if constexpr (std::is_same_v<Metric, prometheus::Histogram>) {
      metric = &family->Add(labels, buckets);
    } else {
      metric = &family->Add(labels);
    }
    ++refs[metric];
    return metric;
  }
  void retain(Metric* metric) {
    std::lock_guard<std::mutex> lock(mutex);
    ++refs[metric];
  }
  void release(Metric* metric) {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = refs.find(metric);
    if (--it->second == 0) {
      refs.erase(it);
      family->Remove(metric);
    }
  }
};

template <typename Metric>
ChildRef<Metric>::ChildRef(std::shared_ptr<FamilyState<Metric>> family, Metric* metric)
    : family_(std::move(family)), metric_(metric) {}

template <typename Metric>
ChildRef<Metric>::ChildRef(const ChildRef& other) : family_(other.family_), metric_(other.metric_) {
  if (metric_ != nullptr) family_->retain(metric_);
}

template <typename Metric>
ChildRef<Metric>::ChildRef(ChildRef&& other) noexcept
    : family_(std::move(other.family_)), metric_(std::exchange(other.metric_, nullptr)) {}

template <typename Metric>
ChildRef<Metric>& ChildRef<Metric>::operator=(const ChildRef& other) {
  if (this != &other) {
    ChildRef copy(other);
    *this = std::move(copy);
  }
  return *this;
}

template <typename Metric>
ChildRef<Metric>& ChildRef<Metric>::operator=(ChildRef&& other) noexcept {
  if (this != &other) {
    reset();
    family_ = std::move(other.family_);
    metric_ = std::exchange(other.metric_, nullptr);
  }
  return *this;
}

template <typename Metric>
ChildRef<Metric>::~ChildRef() {
  reset();
}

template <typename Metric>
void ChildRef<Metric>::reset() {
  if (metric_ != nullptr) family_->release(metric_);
  metric_ = nullptr;
  family_.reset();
}

template class ChildRef<prometheus::Counter>;
template class ChildRef<prometheus::Gauge>;
template class ChildRef<prometheus::Histogram>;

struct InfoState : prometheus::Collectable {
  std::string name;
  std::string help;
  std::vector<std::string> label_names;

  mutable std::mutex mutex;
  std::optional<prometheus::Labels> labels;

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::lock_guard<std::mutex> lock(mutex);
    if (!labels) return {};
    prometheus::MetricFamily family;
    family.name = name;
    family.help = help;
    family.type = prometheus::MetricType::Gauge;
    family.metric.emplace_back();
    for (const auto& [label, value] : *labels) family.metric[0].label.push_back({label, value});
    family.metric[0].gauge.value = 1;
    return {std::move(family)};
  }
};

}  // namespace detail

template <typename Handle>
Result<Handle> Family<Handle>::with_labels(const std::vector<std::string>& values) const {
  if (!state_) return unregistered();
  auto labels = make_labels(state_->name, state_->label_names, values);
  if (!labels.ok()) return std::move(labels).error();
  auto* metric = state_->acquire(*labels);
  return Handle(detail::ChildRef<typename Handle::Metric>(state_, metric));
}

template <typename Handle>
const std::string& Family<Handle>::name() const {
  static const std::string none;
  return state_ ? state_->name : none;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

Status InfoGauge::set(const std::vector<std::string>& values) const {
  if (!state_) return unregistered();
  auto labels = make_labels(state_->name, state_->label_names, values);
  if (!labels.ok()) return std::move(labels).error();
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->labels = std::move(*labels);
  return ok_status();
}

void InfoGauge::clear() const {
  if (!state_) return;
  std::lock_guard<std::mutex> lock(state_->mutex);
  state_->labels.reset();
}

Registry::Registry() : registry_(std::make_shared<prometheus::Registry>()) {}
Registry::~Registry() = default;

// Validates a new family and reserves its name; called with mutex_ held.
Status Registry::declare(const std::string& name, const std::string& help,
                         const std::vector<std::string>& label_names, const char* type) {
  if (auto s = check_metric_name(name); !s.ok()) return s;
  if (auto it = types_.find(name); it != types_.end()) {
    return make_error("metric " + name + " is already registered as " + it->second);
  }
  if (help.empty()) return make_error(name + ": help text is empty");
  std::set<std::string_view> seen;
  for (const auto& label : label_names) {
    if (auto s = check_label_name(label); !s.ok()) return make_error(name + ": " + s.error().message);
    if (!seen.insert(label).second) return make_error(name + ": duplicate label name " + label);
    if (label == "le" && std::string_view(type) == "a histogram") {
      return make_error(name + ": label name le is reserved for histogram buckets");
    }
  }
  types_.emplace(name, type);
  return ok_status();
}

namespace {

template <typename Metric>
std::shared_ptr<detail::FamilyState<Metric>> new_state(
    const std::shared_ptr<prometheus::Registry>& registry, const std::string& name,
    const std::string& help, const std::vector<std::string>& label_names,
    prometheus::detail::Builder<Metric> builder) {
  auto state = std::make_shared<detail::FamilyState<Metric>>();
  state->owner = registry;
  state->family = &builder.Name(name).Help(help).Register(*registry);
  state->name = name;
  state->label_names = label_names;
  return state;
}

}  // namespace

Result<CounterFamily> Registry::counter(const std::string& name, const std::string& help,
                                        const std::vector<std::string>& label_names) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto s = declare(name, help, label_names, "a counter"); !s.ok()) return std::move(s).error();
  return CounterFamily(new_state(registry_, name, help, label_names, prometheus::BuildCounter()));
}

Result<GaugeFamily> Registry::gauge(const std::string& name, const std::string& help,
                                    const std::vector<std::string>& label_names) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto s = declare(name, help, label_names, "a gauge"); !s.ok()) return std::move(s).error();
  return GaugeFamily(new_state(registry_, name, help, label_names, prometheus::BuildGauge()));
}

Result<HistogramFamily> Registry::histogram(const std::string& name, const std::string& help,
                                            const std::vector<std::string>& label_names,
                                            const std::vector<double>& buckets) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (buckets.empty()) return make_error(name + ": a histogram needs at least one bucket boundary");
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1]))) {
      return make_error(name + ": bucket boundaries must be finite and strictly increasing");
    }
  }
  if (auto s = declare(name, help, label_names, "a histogram"); !s.ok()) {
    return std::move(s).error();
  }
  auto state = new_state(registry_, name, help, label_names, prometheus::BuildHistogram());
  state->buckets = buckets;
  return HistogramFamily(std::move(state));
}

Result<InfoGauge> Registry::info(const std::string& name, const std::string& help,
                                 const std::vector<std::string>& label_names) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto s = declare(name, help, label_names, "an info gauge"); !s.ok()) {
    return std::move(s).error();
  }
  auto state = std::make_shared<detail::InfoState>();
  state->name = name;
  state->help = help;
  state->label_names = label_names;
  infos_.push_back(state);
  return InfoGauge(std::move(state));
}

std::vector<prometheus::MetricFamily> Registry::collect() const {
  auto families = registry_->Collect();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& info : infos_) {
      for (auto& family : info->Collect()) families.push_back(std::move(family));
    }
  }
  return families;
}

}  // namespace trellis::metrics
