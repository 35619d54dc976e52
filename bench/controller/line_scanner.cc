#include "bench/controller/line_scanner.h"

#include <cstring>

namespace trellis::bench::controller {
namespace {

// Enough for {"version":"<hex>","namespace":"<63-byte label>".
constexpr size_t kHeadBytes = 256;

// The JSON string at the start of `text`, which follows `prefix`; false when
// absent or escaped (versions and namespaces never need escapes).
bool take_string(std::string_view& text, std::string_view prefix, std::string& out) {
  if (text.substr(0, prefix.size()) != prefix) return false;
  text.remove_prefix(prefix.size());
  size_t end = text.find('"');
  if (end == std::string_view::npos || end == 0) return false;
  std::string_view value = text.substr(0, end);
  if (value.find('\\') != std::string_view::npos) return false;
  out.assign(value);
  text.remove_prefix(end + 1);
  return true;
}

}  // namespace

bool parse_line_head(std::string_view head, std::string& version, std::string& ns) {
  std::string v, n;
  if (!take_string(head, R"({"version":")", v)) return false;
  if (!take_string(head, R"(,"namespace":")", n)) return false;
  version = std::move(v);
  ns = std::move(n);
  return true;
}

void LineScanner::set_marker(std::string marker) {
  marker_ = std::move(marker);
  // The line in progress began before the change the marker stands for, but
  // its rest is scanned all the same; its bytes before now are not.
  carry_.clear();
  has_marker_ = false;
}

void LineScanner::scan(std::string_view segment) {
  if (marker_.empty() || has_marker_ || segment.empty()) return;
  const size_t keep = marker_.size() - 1;
  if (!carry_.empty()) {
    // A marker that starts in the previous chunk and ends in this one.
    std::string joint = carry_;
    joint.append(segment.substr(0, keep));
    if (joint.find(marker_) != std::string::npos) {
      has_marker_ = true;
      return;
    }
  }
  if (::memmem(segment.data(), segment.size(), marker_.data(), marker_.size()) != nullptr) {
    has_marker_ = true;
    return;
  }
  if (segment.size() >= keep) {
    carry_.assign(segment.data() + segment.size() - keep, keep);
  } else {
    carry_.append(segment);
    if (carry_.size() > keep) carry_.erase(0, carry_.size() - keep);
  }
}

void LineScanner::finish_line(const OnLine& on_line) {
  if (bytes_ == 0) {
    ++heartbeats_;
  } else {
    ScannedLine line;
    line.bytes = bytes_;
    line.has_marker = has_marker_;
    if (!parse_line_head(head_, line.version, line.ns)) {
      line.version.clear();
      line.ns.clear();
    }
    on_line(line);
  }
  discard_partial();
}

void LineScanner::discard_partial() {
  head_.clear();
  carry_.clear();
  bytes_ = 0;
  has_marker_ = false;
}

void LineScanner::feed(std::string_view bytes, const OnLine& on_line) {
  while (!bytes.empty()) {
    const void* nl = std::memchr(bytes.data(), '\n', bytes.size());
    size_t take = nl != nullptr ? static_cast<size_t>(static_cast<const char*>(nl) - bytes.data())
                                : bytes.size();
    std::string_view segment = bytes.substr(0, take);
    if (head_.size() < kHeadBytes) head_.append(segment.substr(0, kHeadBytes - head_.size()));
    scan(segment);
    bytes_ += take;
    if (nl == nullptr) return;
    finish_line(on_line);
    bytes.remove_prefix(take + 1);
  }
}

}  // namespace trellis::bench::controller
