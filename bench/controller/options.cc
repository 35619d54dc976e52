#include "bench/controller/options.h"

#include "common/config/config.h"

namespace trellis::bench::controller {
namespace {

using O = LoadOptions;

// An integer field of the Scale inside LoadOptions.
config::Value<O> scale_integer(int Scale::*field, int min, int max) {
  return {"<int>", [=](std::string_view text, O& o) -> Status {
            auto v = config::detail::parse_integer<int>("an integer", text, min, max);
            if (!v.ok()) return std::move(v).error();
            o.scale.*field = *v;
            return ok_status();
          }};
}

const config::Spec<O>& spec() {
  static const config::Spec<O> s = [] {
    config::Spec<O> s("bench-controller-load",
                      "The mesh controller's scale bench: populates the API server with Services, "
                      "EndpointSlices and HTTPRoutes, starts trellis-controller, opens simulated "
                      "sidecar streams, updates HTTPRoutes one at a time and measures how long "
                      "every affected stream takes to receive the change (bench/README.md).");
    s.option({"--kubeconfig", "", "the API server's kubeconfig (admin)", std::nullopt, true},
             config::path(&O::kubeconfig));
    s.option({"--phases", "", "what to run", "all"},
             config::one_of(&O::phases, {{"all", O::Phases::all},
                                         {"populate", O::Phases::populate},
                                         {"measure", O::Phases::measure}}));
    s.option({"--namespaces", "", "namespaces", "50"}, scale_integer(&Scale::namespaces, 1, 100000));
    s.option({"--services", "", "Services (and EndpointSlices)", "10000"},
             scale_integer(&Scale::services, 1, 1000000));
    s.option({"--endpoints-per-service", "", "addresses in each Service's EndpointSlice", "5"},
             scale_integer(&Scale::endpoints_per_service, 1, 1000));
    s.option({"--routes", "", "HTTPRoutes, consumer routes included", "2000"},
             scale_integer(&Scale::routes, 1, 1000000));
    s.option({"--consumer-routes", "", "of --routes, routes in another namespace than their Service",
              "200"},
             scale_integer(&Scale::consumer_routes, 0, 1000000));
    s.option({"--streams", "", "simulated sidecar streams, spread over the namespaces", "200"},
             scale_integer(&Scale::streams, 1, 10000));
    s.option({"--inflight", "", "concurrent create requests while populating", "32"},
             config::integer(&O::inflight, 1, 1024));
    s.option({"--controller-bin", "", "trellis-controller to start (measure phase)", std::nullopt},
             config::path(&O::controller_bin));
    s.option({"--controller-log", "", "where the controller's output goes", std::nullopt},
             config::path(&O::controller_log));
    s.option({"--controller-cpu", "", "pin the controller to this CPU; -1: no pinning", "-1"},
             config::integer(&O::controller_cpu, -1, 1023));
    s.option({"--stream-port", "", "the controller's route-table port (127.0.0.1)", "15010"},
             config::port(&O::stream_port));
    s.option({"--admin-port", "", "the controller's admin port (127.0.0.1)", "15011"},
             config::port(&O::admin_port));
    s.option({"--updates", "", "HTTPRoute updates measured, one at a time", "50"},
             config::integer(&O::updates, 0, 100000));
    s.option({"--consumer-every", "", "every N-th update changes a consumer route; 0: never", "5"},
             config::integer(&O::consumer_every, 0, 100000));
    s.option({"--update-timeout", "", "seconds for every affected stream to receive an update",
              "60"},
             config::integer(&O::update_timeout_s, 1, 3600));
    s.option({"--update-gap-ms", "", "quiet milliseconds after each update", "1000"},
             config::integer(&O::update_gap_ms, 0, 600000));
    s.option({"--sync-timeout", "", "seconds from the controller's start to a table on every stream",
              "600"},
             config::integer(&O::sync_timeout_s, 1, 36000));
    s.option({"--settle-timeout", "",
              "seconds to wait for the initial route-status writes to finish", "600"},
             config::integer(&O::settle_timeout_s, 1, 36000));
    s.option({"--idle-seconds", "", "the idle measurement's length", "10"},
             config::integer(&O::idle_s, 1, 3600));
    s.option({"--verify-sidecar", "",
              "check with the sidecar's own stream client (parse and compile) that the last table "
              "installs",
              "true"},
             config::boolean(&O::verify_sidecar));
    s.option({"--apiserver-pid", "", "kube-apiserver's pid, for its CPU time per phase", "0"},
             config::integer(&O::apiserver_pid, 0, 1 << 30));
    s.option({"--etcd-pid", "", "etcd's pid, for its CPU time per phase", "0"},
             config::integer(&O::etcd_pid, 0, 1 << 30));
    s.option({"--report", "", "markdown report", std::nullopt}, config::path(&O::report));
    s.option({"--tsv", "", "one tab-separated line per update", std::nullopt}, config::path(&O::tsv));
    s.option({"--checks", "", "sanity checks, one 'ok|FAILED<TAB>name' line each", std::nullopt},
             config::path(&O::checks));
    return s;
  }();
  return s;
}

}  // namespace

Result<ParsedLoadOptions> parse_load_options(const std::vector<std::string>& args) {
  auto parsed = spec().parse(args, config::map_environment({}));
  if (!parsed.ok()) return std::move(parsed).error();
  ParsedLoadOptions out;
  out.help = parsed->help;
  if (out.help) return out;
  out.options = std::move(parsed->config);
  const LoadOptions& o = out.options;
  if (Status s = validate(o.scale); !s.ok()) return s.error();
  if (o.phases != O::Phases::populate) {
    if (o.controller_bin.empty()) return make_error("--controller-bin is required to measure");
    if (o.stream_port == o.admin_port) {
      return make_error("--stream-port and --admin-port must differ");
    }
  }
  return out;
}

std::string load_help_text() { return spec().help(); }

}  // namespace trellis::bench::controller
