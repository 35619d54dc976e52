// trellis-echo: the Istio echo app look-alike that Trellis's tests, the
// sandbox's pods, the demo and the conformance runner use as backend and
// client. See README.md in this folder.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/event/event_loop.h"
#include "common/event/signal_watcher.h"
#include "common/log/log.h"
#include "tests/support/echo/client.h"
#include "tests/support/echo/options.h"
#include "tests/support/echo/server.h"

namespace echo = trellis::support::echo;
namespace log = trellis::log;

namespace {

constexpr const char* kUsage =
    "usage: trellis-echo server [flags]     (trellis-echo server --help)\n"
    "       trellis-echo client <url> [flags] (trellis-echo client --help)\n";

void write_all(FILE* to, const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), to);
  std::fflush(to);
}

std::string system_hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

int run_server(const std::vector<std::string>& args) {
  auto options = echo::parse_server_args(args, trellis::config::process_environment(), system_hostname());
  if (!options.ok()) {
    write_all(stderr, "trellis-echo server: " + options.error().message +
                          "\n(trellis-echo server --help shows the flags)\n");
    return 2;
  }
  if (options->help) {
    write_all(stdout, echo::server_usage());
    return 0;
  }
  log::set_component("trellis-echo");
  auto loop = trellis::event::EventLoop::create();
  if (!loop.ok()) {
    log::error("cannot create the event loop", {{"error", loop.error().message}});
    return 1;
  }
  auto server = echo::EchoServer::start(**loop, *options);
  if (!server.ok()) {
    log::error("cannot start the echo server", {{"error", server.error().message}});
    return 1;
  }
  if (!options->tls_ports.empty()) {
    std::string ports;
    for (uint16_t p : options->tls_ports) ports += (ports.empty() ? "" : ",") + std::to_string(p);
    log::warn("TLS is not supported: these ports are not served", {{"ports", ports}});
  }
  std::string line = (*server)->listening_line();
  write_all(stdout, line + "\n");  // tests and scripts wait for this line
  log::info("echo server started", {{"hostname", options->hostname}, {"ports", line}});

  auto signals = trellis::event::SignalWatcher::create(**loop, {SIGTERM, SIGINT}, [&](int) { (*loop)->stop(); });
  if (!signals.ok()) {
    log::error("cannot watch signals", {{"error", signals.error().message}});
    return 1;
  }
  (*loop)->run();
  signals.value().reset();
  server.value().reset();
  return 0;
}

int run_client(const std::vector<std::string>& args) {
  auto options = echo::parse_client_args(args);
  if (!options.ok()) {
    write_all(stderr, "trellis-echo client: " + options.error().message +
                          "\n(trellis-echo client --help shows the flags)\n");
    return 2;
  }
  if (options->help) {
    write_all(stdout, echo::client_usage());
    return 0;
  }
  echo::ClientResult result = echo::run_client(*options);
  write_all(stdout, result.out);
  write_all(stderr, result.err);
  return result.exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args = trellis::config::arguments(argc, argv);
  if (args.empty()) {
    write_all(stderr, kUsage);
    return 2;
  }
  std::string command = args.front();
  args.erase(args.begin());
  if (command == "server") return run_server(args);
  if (command == "client") return run_client(args);
  if (command == "--help" || command == "-h") {
    write_all(stdout, kUsage);
    return 0;
  }
  write_all(stderr, "trellis-echo: unknown command '" + command + "'\n" + kUsage);
  return 2;
}
