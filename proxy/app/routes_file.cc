#include "proxy/app/routes_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log/log.h"

namespace trellis::proxy::app {
namespace {

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error("read " + path + ": " + std::strerror(errno), errno);
  std::string out;
  char buf[64 * 1024];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return make_error("read " + path + ": " + std::strerror(e), e);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      return make_error("read " + path + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string dir_name(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Result<LoadedTable> load_routes_file(const std::string& path, const routes::Limits& limits) {
  auto text = read_file(path, limits.max_bytes);
  if (!text.ok()) return std::move(text).error();
  auto parsed = routes::parse(*text, limits);
  if (!parsed.ok()) return make_error("parse " + path + ": " + parsed.error().message);
  LoadedTable t;
  t.routes = std::move(*parsed);
  t.compiled = router::Table::compile(t.routes);
  return t;
}

RoutesFileWatcher::RoutesFileWatcher(event::EventLoop& loop, std::string path, OnTable on_table)
    : loop_(loop),
      path_(std::move(path)),
      file_name_(base_name(path_)),
      on_table_(std::move(on_table)),
      poll_(loop, [this] { check(); }) {}

Result<std::unique_ptr<RoutesFileWatcher>> RoutesFileWatcher::start(
    event::EventLoop& loop, std::string path, metrics::Registry& registry, OnTable on_table,
    std::chrono::milliseconds poll_interval) {
  auto reloads = registry.counter("trellis_route_table_reloads_total",
                                  "Route tables loaded from the routes file.");
  if (!reloads.ok()) return std::move(reloads).error();
  auto errors = registry.counter("trellis_route_table_errors_total",
                                 "Route tables rejected; the previous table stays active.", {"reason"});
  if (!errors.ok()) return std::move(errors).error();

  std::unique_ptr<RoutesFileWatcher> w(new RoutesFileWatcher(loop, std::move(path), std::move(on_table)));
  w->reloads_ = reloads->with_labels({}).value();
  w->invalid_ = errors->with_labels({"invalid"}).value();
  w->unreadable_ = errors->with_labels({"unreadable"}).value();

  // Directory events catch the atomic rename at once; the poll catches what
  // inotify cannot see (e.g. some network filesystems, a directory created later).
  w->watch_ = event::make_uv_handle<uv_fs_event_t>();
  if (uv_fs_event_init(loop.uv(), w->watch_.get()) == 0) {
    w->watch_->data = w.get();
    int rc = uv_fs_event_start(w->watch_.get(), &RoutesFileWatcher::on_fs_event, dir_name(w->path_).c_str(), 0);
    if (rc != 0) {
      log::warn("routes file directory not watched; polling only",
                {{"path", w->path_}, {"error", uv_strerror(rc)}});
    }
  }
  w->poll_.start(poll_interval, poll_interval);
  w->check();
  return w;
}

void RoutesFileWatcher::on_fs_event(uv_fs_event_t* handle, const char* filename, int, int status) {
  auto* self = static_cast<RoutesFileWatcher*>(handle->data);
  if (self == nullptr || status < 0) return;
  if (filename != nullptr && self->file_name_ != filename) return;
  self->check();
}

void RoutesFileWatcher::check() {
  struct stat st;
  FileId id;
  if (::stat(path_.c_str(), &st) == 0) {
    id.device = st.st_dev;
    id.inode = st.st_ino;
    id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    id.size = st.st_size;
  }
  if (id == current_ && !(id.size < 0 && last_error_.empty())) return;
  reload(id);
}

void RoutesFileWatcher::reload(const FileId& id) {
  current_ = id;
  auto loaded = load_routes_file(path_);
  if (!loaded.ok()) {
    const Error& e = loaded.error();
    (e.message.rfind("parse ", 0) == 0 ? invalid_ : unreadable_).inc();
    if (e.message != last_error_) {
      log::error("route table rejected; keeping the previous one", {{"path", path_}, {"error", e.message}});
      last_error_ = e.message;
    }
    return;
  }
  last_error_.clear();
  reloads_.inc();
  log::info("route table loaded", {{"path", path_},
                                   {"version", loaded->routes->version},
                                   {"namespace", loaded->routes->ns},
                                   {"services", loaded->routes->services.size()}});
  on_table_(std::move(*loaded));
}

}  // namespace trellis::proxy::app
