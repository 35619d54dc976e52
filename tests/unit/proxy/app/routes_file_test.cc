#include "proxy/app/routes_file.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "common/metrics/exposition.h"

using namespace trellis;
namespace app = trellis::proxy::app;
using namespace std::chrono_literals;

namespace {

const char* kTableV1 = R"({"version":"v1","namespace":"shop","services":[],"endpoints":[]})";
const char* kTableV2 = R"({"version":"v2","namespace":"shop","services":[],"endpoints":[]})";

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/trellis-routes-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::remove((path_ + "/routes.json").c_str());
    std::remove((path_ + "/routes.json.tmp").c_str());
    rmdir(path_.c_str());
  }
  std::string file() const { return path_ + "/routes.json"; }
  // Writes like the controller or kubelet would: a temp file, then rename.
  void replace(const std::string& content) const {
    std::ofstream(path_ + "/routes.json.tmp") << content;
    REQUIRE(std::rename((path_ + "/routes.json.tmp").c_str(), file().c_str()) == 0);
  }

 private:
  std::string path_;
};

// Runs the loop until `done` or about 5 s pass.
template <typename F>
void run_until(event::EventLoop& loop, F done) {
  event::Timer tick(loop, [&] {
    if (done()) loop.stop();
  });
  event::Timer limit(loop, [&] { loop.stop(); });
  tick.start(5ms, 5ms);
  limit.start(5000ms);
  loop.run();
}

}  // namespace

TEST_CASE("load_routes_file reports read and parse failures distinctly") {
  TempDir dir;
  auto missing = app::load_routes_file(dir.file());
  CHECK(missing.error().message == "read " + dir.file() + ": No such file or directory");
  dir.replace("{\"version\": 3}");
  auto invalid = app::load_routes_file(dir.file());
  CHECK(invalid.error().message.rfind("parse " + dir.file() + ": ", 0) == 0);
  dir.replace(kTableV1);
  auto ok = app::load_routes_file(dir.file());
  REQUIRE(ok.ok());
  CHECK(ok->routes->version == "v1");
  CHECK(ok->compiled != nullptr);
}

TEST_CASE("the watcher loads the file, follows atomic renames and keeps the old table on errors") {
  TempDir dir;
  dir.replace(kTableV1);
  auto loop = event::EventLoop::create().value();
  metrics::Registry registry;
  std::vector<std::string> versions;
  auto watcher = app::RoutesFileWatcher::start(*loop, dir.file(), registry,
                                               [&](app::LoadedTable t) { versions.push_back(t.routes->version); },
                                               50ms);
  REQUIRE(watcher.ok());
  REQUIRE(versions == std::vector<std::string>{"v1"});

  dir.replace("not json");
  run_until(*loop, [&] {
    return metrics::text_exposition(registry).find("trellis_route_table_errors_total{reason=\"invalid\"} 1") !=
           std::string::npos;
  });
  CHECK(versions.size() == 1);

  dir.replace(kTableV2);
  run_until(*loop, [&] { return versions.size() == 2; });
  REQUIRE(versions.size() == 2);
  CHECK(versions[1] == "v2");
  CHECK(metrics::text_exposition(registry).find("trellis_route_table_reloads_total 2") != std::string::npos);
  watcher->reset();
}

TEST_CASE("a missing file at start is counted, and loaded once it appears") {
  TempDir dir;
  auto loop = event::EventLoop::create().value();
  metrics::Registry registry;
  int loads = 0;
  auto watcher =
      app::RoutesFileWatcher::start(*loop, dir.file(), registry, [&](app::LoadedTable) { ++loads; }, 50ms);
  REQUIRE(watcher.ok());
  CHECK(loads == 0);
  CHECK(metrics::text_exposition(registry).find("trellis_route_table_errors_total{reason=\"unreadable\"} 1") !=
        std::string::npos);
  dir.replace(kTableV1);
  run_until(*loop, [&] { return loads == 1; });
  CHECK(loads == 1);
  watcher->reset();
}
