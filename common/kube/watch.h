// The WATCH event stream, sans-IO: the API server sends one JSON object per
// line, {"type":"ADDED","object":{...}}, over a chunked response whose chunks
// need not align with lines. WatchDecoder reassembles lines from any split and
// turns each into a WatchEvent.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/json/json.h"

namespace trellis::kube {

enum class WatchEventType { added, modified, deleted, bookmark, error };

// "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR".
std::string_view watch_event_type_name(WatchEventType type);

struct WatchEvent {
  WatchEventType type = WatchEventType::added;
  json::Document document;  // the whole event line

  // The object (for ERROR, a Status object).
  json::Value object() const;
};

struct WatchLimits {
  size_t max_event_bytes = size_t{16} << 20;  // one line
  size_t max_depth = 128;
};

class WatchDecoder {
 public:
  // Receives each complete line: an event, or why it is not one ("watch
  // event: invalid JSON at offset 3: ...", "watch event: (root): missing
  // required field 'type'", "watch event: type: unknown event type 'FOO'",
  // "watch event exceeds 16777216 bytes"; an over-long line is skipped up to
  // its newline). Returns false to stop: the decoder is then not touched
  // again, so the sink may destroy it.
  using Sink = std::function<bool(Result<WatchEvent> event)>;

  explicit WatchDecoder(WatchLimits limits = {}) : limits_(limits) {}

  // Returns false when the sink stopped it.
  bool feed(std::string_view bytes, const Sink& sink);

  // Bytes of an incomplete line held back.
  size_t pending_bytes() const { return line_.size(); }

 private:
  WatchLimits limits_;
  std::string line_;
  bool skipping_ = false;  // inside an over-long line
};

// Parses one event line (without its newline).
Result<WatchEvent> parse_watch_event(std::string_view line, const WatchLimits& limits = {});

}  // namespace trellis::kube
