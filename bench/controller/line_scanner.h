// Reads a route-table stream body (newline-delimited JSON, one table a line,
// an empty line a heartbeat) without parsing it: per table it keeps only the
// version and namespace (the document starts with them, see
// mesh-controller/resolve/table.h), its size, and whether it contains the
// marker being looked for, found with memmem across chunk boundaries. This is
// what lets one load-tool thread read 200 streams of multi-megabyte tables;
// the sidecar's real parser is exercised separately (bench/controller/main.cc).
//
// Threading: one thread; not shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace trellis::bench::controller {

struct ScannedLine {
  // Empty when the line does not start with {"version":"<v>","namespace":"<ns>"
  // (the caller counts it as malformed).
  std::string version;
  std::string ns;
  size_t bytes = 0;  // without the newline
  bool has_marker = false;
};

class LineScanner {
 public:
  using OnLine = std::function<void(const ScannedLine& line)>;

  // The marker to look for from now on, also in the rest of the line being
  // read; "" looks for nothing.
  void set_marker(std::string marker);
  // Splits `bytes` (any split of the body) into lines; calls on_line for each
  // complete table line, in order.
  void feed(std::string_view bytes, const OnLine& on_line);
  // Drops the line being read (its connection broke); the marker stays.
  void discard_partial();

  uint64_t heartbeats() const { return heartbeats_; }
  // Bytes of the line being read.
  size_t partial_bytes() const { return bytes_; }

 private:
  void scan(std::string_view segment);
  void finish_line(const OnLine& on_line);

  std::string marker_;
  std::string head_;   // the first bytes of the current line (version, namespace)
  std::string carry_;  // the current line's last marker_.size() - 1 bytes
  size_t bytes_ = 0;
  bool has_marker_ = false;
  uint64_t heartbeats_ = 0;
};

// The version and namespace at the start of a table line; false when the
// line does not start with {"version":"...","namespace":"...".
bool parse_line_head(std::string_view head, std::string& version, std::string& ns);

}  // namespace trellis::bench::controller
