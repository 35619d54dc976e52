// Watches --routes-file and loads every new version of it: read, parse
// (common/routes), compile (proxy/router). Writers replace the file with an
// atomic rename, so the directory is watched (the file's inode changes) and,
// as a safety net for filesystems without inotify, the file's identity is
// also polled. An unreadable or invalid file keeps the current table: the
// error is logged once per distinct failure and counted in
// trellis_route_table_errors_total{reason}.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/base/result.h"
#include "common/event/event_loop.h"
#include "common/event/timer.h"
#include "common/event/uv_handle.h"
#include "common/metrics/metrics.h"
#include "common/routes/route_table.h"
#include "proxy/router/table.h"

namespace trellis::proxy::app {

struct LoadedTable {
  std::shared_ptr<const routes::RouteTable> routes;
  std::shared_ptr<const router::Table> compiled;
};

// Reads, parses and compiles one route-table file. Errors say which step
// failed: "read /x: No such file or directory", "parse /x: services[0]...".
Result<LoadedTable> load_routes_file(const std::string& path, const routes::Limits& limits = {});

class RoutesFileWatcher {
 public:
  using OnTable = std::function<void(LoadedTable table)>;

  // Loads the file once before returning (a failure is counted and logged;
  // the watcher keeps trying), then calls `on_table` on `loop` for every new
  // valid version. `registry` receives the watcher's metrics.
  static Result<std::unique_ptr<RoutesFileWatcher>> start(event::EventLoop& loop, std::string path,
                                                          metrics::Registry& registry, OnTable on_table,
                                                          std::chrono::milliseconds poll_interval =
                                                              std::chrono::milliseconds(1000));
  ~RoutesFileWatcher() = default;

 private:
  struct FileId {
    dev_t device = 0;
    ino_t inode = 0;
    int64_t mtime_ns = 0;
    off_t size = -1;
    bool operator==(const FileId& o) const {
      return device == o.device && inode == o.inode && mtime_ns == o.mtime_ns && size == o.size;
    }
  };

  RoutesFileWatcher(event::EventLoop& loop, std::string path, OnTable on_table);
  void check();  // reload if the file's identity changed
  void reload(const FileId& id);
  static void on_fs_event(uv_fs_event_t* handle, const char* filename, int events, int status);

  event::EventLoop& loop_;
  std::string path_;
  std::string file_name_;  // the last path component, to filter directory events
  OnTable on_table_;
  FileId current_;
  std::string last_error_;
  event::UvHandle<uv_fs_event_t> watch_;
  event::Timer poll_;
  metrics::Counter reloads_;
  metrics::Counter invalid_;     // trellis_route_table_errors_total{reason="invalid"}
  metrics::Counter unreadable_;  // trellis_route_table_errors_total{reason="unreadable"}
};

}  // namespace trellis::proxy::app
