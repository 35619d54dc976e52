#include "common/kube/watch.h"

namespace trellis::kube {

namespace {

bool blank(std::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

Error event_error(const Error& e) { return make_error("watch event: " + e.message); }

}  // namespace

std::string_view watch_event_type_name(WatchEventType type) {
  switch (type) {
    case WatchEventType::added: return "ADDED";
    case WatchEventType::modified: return "MODIFIED";
    case WatchEventType::deleted: return "DELETED";
    case WatchEventType::bookmark: return "BOOKMARK";
    case WatchEventType::error: return "ERROR";
  }
  return "ERROR";
}

json::Value WatchEvent::object() const {
  // parse_watch_event checked that the field is an object.
  return *document.root().object()->find("object");
}

Result<WatchEvent> parse_watch_event(std::string_view line, const WatchLimits& limits) {
  auto doc = json::Document::parse(line, json::Limits{limits.max_event_bytes, limits.max_depth});
  if (!doc) return event_error(doc.error());
  auto root = doc->root().object();
  if (!root) return event_error(root.error());
  auto type_text = root->required_string("type");
  if (!type_text) return event_error(type_text.error());
  WatchEventType type;
  if (*type_text == "ADDED") {
    type = WatchEventType::added;
  } else if (*type_text == "MODIFIED") {
    type = WatchEventType::modified;
  } else if (*type_text == "DELETED") {
    type = WatchEventType::deleted;
  } else if (*type_text == "BOOKMARK") {
    type = WatchEventType::bookmark;
  } else if (*type_text == "ERROR") {
    type = WatchEventType::error;
  } else {
    return event_error(
        root->required("type")->error("unknown event type '" + std::string(*type_text) + "'"));
  }
  auto object = root->required_object("object");
  if (!object) return event_error(object.error());
  return WatchEvent{type, std::move(*doc)};
}

bool WatchDecoder::feed(std::string_view bytes, const Sink& sink) {
  while (!bytes.empty()) {
    size_t newline = bytes.find('\n');
    std::string_view segment = bytes.substr(0, newline);
    bool complete = newline != std::string_view::npos;
    bytes.remove_prefix(complete ? newline + 1 : bytes.size());
    if (skipping_) {
      if (complete) skipping_ = false;
      continue;
    }
    if (line_.size() + segment.size() > limits_.max_event_bytes) {
      line_.clear();
      skipping_ = !complete;
      if (!sink(make_error("watch event exceeds " + std::to_string(limits_.max_event_bytes) +
                           " bytes"))) {
        return false;
      }
      continue;
    }
    if (!complete) {
      line_.append(segment);
      return true;
    }
    Result<WatchEvent> event = make_error("");
    if (line_.empty()) {
      if (blank(segment)) continue;
      event = parse_watch_event(segment, limits_);
    } else {
      line_.append(segment);
      bool is_blank = blank(line_);
      if (!is_blank) event = parse_watch_event(line_, limits_);
      line_.clear();
      if (is_blank) continue;
    }
    if (!sink(std::move(event))) return false;
  }
  return true;
}

}  // namespace trellis::kube
