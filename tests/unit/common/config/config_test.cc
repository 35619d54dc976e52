#include "common/config/config.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

namespace config = trellis::config;
using Args = std::vector<std::string>;
using Env = std::map<std::string, std::string>;

namespace {

enum class Level { debug, info, warn, error };

struct TestConfig {
  int workers = -1;
  uint16_t admin_port = 0;
  bool strict = false;
  std::string name = "initial";
  std::string cert;
  std::vector<std::string> namespaces{"initial"};
  Level level = Level::debug;
  std::chrono::milliseconds timeout{0};
  int64_t offset = 0;
  uint32_t count = 0;
  std::vector<std::string> files;
};

// Stands in for the binaries' real duration parser: "<n>ms" or "<n>s".
trellis::Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto bad = trellis::make_error("invalid duration '" + std::string(text) + "' (want e.g. 250ms or 5s)");
  int scale = 1;
  if (text.size() > 2 && text.substr(text.size() - 2) == "ms") {
    text.remove_suffix(2);
  } else if (text.size() > 1 && text.back() == 's') {
    text.remove_suffix(1);
    scale = 1000;
  } else {
    return bad;
  }
  auto n = config::detail::parse_integer<int>("", text, 0, 3600000);
  if (!n.ok()) return bad;
  return std::chrono::milliseconds(*n * scale);
}

config::Spec<TestConfig> make_spec(bool with_positionals = false) {
  config::Spec<TestConfig> spec("trellis-test", "Exercises every option type.");
  spec.option({"--workers", "TRELLIS_WORKERS", "Worker threads.", "2"},
              config::integer(&TestConfig::workers, 1, 64))
      .option({"--admin-port", "TRELLIS_ADMIN_PORT", "Admin listener port.", "15020"},
              config::port(&TestConfig::admin_port))
      .option({"--strict", "TRELLIS_STRICT", "Refuse non-mesh traffic.", "false"},
              config::boolean(&TestConfig::strict))
      .option({"--name", "TRELLIS_NAME", "Display name.", "proxy"}, config::text(&TestConfig::name))
      .option({"--cert", "TRELLIS_CERT", "Certificate file.", std::nullopt, true},
              config::path(&TestConfig::cert))
      .option({"--namespaces", "TRELLIS_NAMESPACES", "Watched namespaces.", ""},
              config::list(&TestConfig::namespaces))
      .option({"--log-level", "TRELLIS_LOG_LEVEL", "Log threshold.", "info"},
              config::one_of(&TestConfig::level, {{"debug", Level::debug},
                                                  {"info", Level::info},
                                                  {"warn", Level::warn},
                                                  {"error", Level::error}}))
      .option({"--timeout", "TRELLIS_TIMEOUT", "Request timeout.", "15s"},
              config::duration(&TestConfig::timeout, parse_duration))
      .option({"--offset", "", "Flag-only signed 64-bit value.", std::nullopt},
              config::integer(&TestConfig::offset, std::numeric_limits<int64_t>::min(),
                              std::numeric_limits<int64_t>::max()))
      .option({"--count", "TRELLIS_COUNT", "Unsigned 32-bit value.", std::nullopt},
              config::integer(&TestConfig::count, 0u, std::numeric_limits<uint32_t>::max()));
  if (with_positionals) spec.positionals("files", "Input files.", &TestConfig::files);
  return spec;
}

// Parses with the required --cert supplied unless the test gives it.
trellis::Result<config::Parsed<TestConfig>> parse(Args args, Env env = {}, bool positionals = false) {
  if (env.count("TRELLIS_CERT") == 0) env["TRELLIS_CERT"] = "/etc/trellis/cert.pem";
  return make_spec(positionals).parse(args, config::map_environment(env));
}

TestConfig parse_ok(Args args, Env env = {}, bool positionals = false) {
  auto r = parse(std::move(args), std::move(env), positionals);
  if (!r.ok()) FAIL(r.error().message);
  REQUIRE_FALSE(r->help);
  return r->config;
}

std::string parse_error(Args args, Env env = {}, bool positionals = false) {
  auto r = parse(std::move(args), std::move(env), positionals);
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

}  // namespace

TEST_CASE("declared defaults apply; options without one keep the struct's value") {
  auto c = parse_ok({});
  CHECK(c.workers == 2);
  CHECK(c.admin_port == 15020);
  CHECK_FALSE(c.strict);
  CHECK(c.name == "proxy");
  CHECK(c.cert == "/etc/trellis/cert.pem");
  CHECK(c.namespaces.empty());  // default "" is the empty list
  CHECK(c.level == Level::info);
  CHECK(c.timeout == std::chrono::seconds(15));
  CHECK(c.offset == 0);
  CHECK(c.count == 0);
}

TEST_CASE("every type from flags, in both --name value and --name=value form") {
  auto c = parse_ok({"--workers", "64", "--admin-port=65535", "--strict", "--name", "",
                     "--cert=/tmp/c.pem", "--namespaces", " shop , default,kube-system ",
                     "--log-level=warn", "--timeout", "250ms", "--offset=-9223372036854775808",
                     "--count", "4294967295"});
  CHECK(c.workers == 64);
  CHECK(c.admin_port == 65535);
  CHECK(c.strict);
  CHECK(c.name.empty());
  CHECK(c.cert == "/tmp/c.pem");
  CHECK(c.namespaces == std::vector<std::string>{"shop", "default", "kube-system"});
  CHECK(c.level == Level::warn);
  CHECK(c.timeout == std::chrono::milliseconds(250));
  CHECK(c.offset == std::numeric_limits<int64_t>::min());
  CHECK(c.count == std::numeric_limits<uint32_t>::max());

  CHECK(parse_ok({"--offset", "-5"}).offset == -5);  // a negative number is a value, not a flag
  CHECK(parse_ok({"--name", "-"}).name == "-");
  CHECK(parse_ok({"--name=--x=y"}).name == "--x=y");
  CHECK(parse_ok({"--namespaces", "one"}).namespaces == std::vector<std::string>{"one"});
}

TEST_CASE("every type from the environment") {
  auto c = parse_ok({}, {{"TRELLIS_WORKERS", "1"},
                         {"TRELLIS_ADMIN_PORT", "1"},
                         {"TRELLIS_STRICT", "true"},
                         {"TRELLIS_NAME", "from env"},
                         {"TRELLIS_CERT", "/env/cert.pem"},
                         {"TRELLIS_NAMESPACES", "a,b"},
                         {"TRELLIS_LOG_LEVEL", "error"},
                         {"TRELLIS_TIMEOUT", "2s"},
                         {"TRELLIS_COUNT", "7"}});
  CHECK(c.workers == 1);
  CHECK(c.admin_port == 1);
  CHECK(c.strict);
  CHECK(c.name == "from env");
  CHECK(c.cert == "/env/cert.pem");
  CHECK(c.namespaces == std::vector<std::string>{"a", "b"});
  CHECK(c.level == Level::error);
  CHECK(c.timeout == std::chrono::seconds(2));
  CHECK(c.count == 7);
}

TEST_CASE("precedence: flag over environment over default") {
  Env env{{"TRELLIS_WORKERS", "8"}, {"TRELLIS_LOG_LEVEL", "debug"}, {"TRELLIS_STRICT", "true"}};
  auto c = parse_ok({"--workers", "16", "--strict=false"}, env);
  CHECK(c.workers == 16);             // flag beats env
  CHECK(c.level == Level::debug);     // env beats default
  CHECK_FALSE(c.strict);              // an explicit false flag beats a true env
  CHECK(c.timeout == std::chrono::seconds(15));  // default
  // A flag overrides a broken variable without it being parsed.
  CHECK(parse_ok({"--workers", "3"}, {{"TRELLIS_WORKERS", "lots"}}).workers == 3);
}

TEST_CASE("an empty environment variable counts as unset") {
  auto c = parse_ok({}, {{"TRELLIS_WORKERS", ""}, {"TRELLIS_NAME", ""}});
  CHECK(c.workers == 2);
  CHECK(c.name == "proxy");
  CHECK(parse_error({}, {{"TRELLIS_CERT", ""}}) == "--cert: required (or set TRELLIS_CERT)");
}

TEST_CASE("booleans are switches or take =true / =false") {
  CHECK(parse_ok({"--strict=true"}).strict);
  CHECK_FALSE(parse_ok({"--strict=false"}).strict);
  CHECK(parse_error({"--strict=yes"}) == "--strict: expected true or false, got 'yes'");
  CHECK(parse_error({"--strict="}) == "--strict: expected true or false, got ''");
  CHECK(parse_error({}, {{"TRELLIS_STRICT", "1"}}) ==
        "TRELLIS_STRICT: expected true or false, got '1'");
  // A switch never consumes the next argument.
  CHECK(parse_error({"--strict", "false"}) == "unexpected argument 'false'");
}

TEST_CASE("positional arguments: rejected unless declared; -- ends the options") {
  CHECK(parse_error({"extra"}) == "unexpected argument 'extra'");
  CHECK(parse_error({""}) == "unexpected argument ''");
  CHECK(parse_error({"--", "--workers"}) == "unexpected argument '--workers'");
  auto c = parse_ok({"a.json", "--workers", "3", "-", "--", "--workers", "-h", ""}, {}, true);
  CHECK(c.workers == 3);
  CHECK(c.files == std::vector<std::string>{"a.json", "-", "--workers", "-h", ""});
  CHECK(parse_ok({}, {}, true).files.empty());
  CHECK(parse_error({std::string("a\0b", 3)}, {}, true) == "argument 'a\\x00b' contains a NUL byte");
}

TEST_CASE("--help and -h win over other mistakes, before --") {
  for (const Args& args : {Args{"--help"}, Args{"-h"}, Args{"--bogus", "--help"},
                           Args{"--workers", "x", "-h"}}) {
    auto r = make_spec().parse(args, config::map_environment({}));  // even without --cert
    REQUIRE(r.ok());
    CHECK(r->help);
  }
  auto r = make_spec(true).parse({"--", "--help"}, config::map_environment({{"TRELLIS_CERT", "c"}}));
  REQUIRE(r.ok());
  CHECK_FALSE(r->help);
  CHECK(r->config.files == std::vector<std::string>{"--help"});
  CHECK(parse_error({"--help=x"}) == "unknown flag --help");
}

TEST_CASE("command-line errors have exact messages") {
  CHECK(parse_error({"--foo"}) == "unknown flag --foo");
  CHECK(parse_error({"--foo=1"}) == "unknown flag --foo");
  CHECK(parse_error({"-w", "2"}) == "unknown flag -w");
  CHECK(parse_error({"---workers", "2"}) == "unknown flag ---workers");
  CHECK(parse_error({"--Workers", "2"}) == "unknown flag --Workers");
  CHECK(parse_error({"--workers"}) == "--workers: missing value");
  CHECK(parse_error({"--workers", "--strict"}) == "--workers: missing value");
  CHECK(parse_error({"--workers", "--"}) == "--workers: missing value");
  CHECK(parse_error({"--workers", "2", "--workers=3"}) == "--workers: given more than once");
  CHECK(parse_error({"--strict", "--strict"}) == "--strict: given more than once");
  CHECK(parse_error({}, {{"TRELLIS_CERT", ""}}) == "--cert: required (or set TRELLIS_CERT)");
}

TEST_CASE("value errors name the flag or the variable they came from") {
  CHECK(parse_error({"--workers", "x"}) == "--workers: expected an integer between 1 and 64, got 'x'");
  CHECK(parse_error({}, {{"TRELLIS_WORKERS", "x"}}) ==
        "TRELLIS_WORKERS: expected an integer between 1 and 64, got 'x'");
  CHECK(parse_error({"--log-level", "loud"}) ==
        "--log-level: unknown value 'loud' (want debug, info, warn or error)");
  CHECK(parse_error({"--log-level=INFO"}) ==
        "--log-level: unknown value 'INFO' (want debug, info, warn or error)");
  CHECK(parse_error({"--timeout", "soon"}) ==
        "--timeout: invalid duration 'soon' (want e.g. 250ms or 5s)");
  CHECK(parse_error({}, {{"TRELLIS_TIMEOUT", "5m"}}) ==
        "TRELLIS_TIMEOUT: invalid duration '5m' (want e.g. 250ms or 5s)");
  CHECK(parse_error({"--cert="}) == "--cert: expected a file path, got ''");
  CHECK(parse_error({"--namespaces", "a,,b"}) == "--namespaces: empty item in list 'a,,b'");
  CHECK(parse_error({"--namespaces", "a,"}) == "--namespaces: empty item in list 'a,'");
  CHECK(parse_error({"--namespaces", " "}) == "--namespaces: empty item in list ' '");
}

TEST_CASE("integers: strict syntax and range, whatever the field type") {
  for (const char* bad : {"", " 2", "2 ", "+2", "2.0", "0x10", "1e1", "0", "65", "-1",
                          "99999999999999999999", "-99999999999999999999"}) {
    CAPTURE(bad);
    CHECK(parse_error({"--workers", bad}) ==
          "--workers: expected an integer between 1 and 64, got '" + std::string(bad) + "'");
  }
  CHECK(parse_ok({"--workers", "007"}).workers == 7);
  CHECK(parse_ok({"--offset", "9223372036854775807"}).offset ==
        std::numeric_limits<int64_t>::max());
  CHECK(parse_error({"--offset", "9223372036854775808"}) ==
        "--offset: expected an integer between -9223372036854775808 and 9223372036854775807, "
        "got '9223372036854775808'");
  CHECK(parse_error({"--count", "4294967296"}) ==
        "--count: expected an integer between 0 and 4294967295, got '4294967296'");
  CHECK(parse_error({"--count", "-0"}) ==
        "--count: expected an integer between 0 and 4294967295, got '-0'");
}

TEST_CASE("ports are 1..65535") {
  CHECK(parse_ok({"--admin-port", "1"}).admin_port == 1);
  for (const char* bad : {"0", "-1", "-15020", "65536", "4294967297", "http", ""}) {
    CAPTURE(bad);
    CHECK(parse_error({"--admin-port", bad}) ==
          "--admin-port: expected a port between 1 and 65535, got '" + std::string(bad) + "'");
  }
  CHECK(parse_error({}, {{"TRELLIS_ADMIN_PORT", "-1"}}) ==
        "TRELLIS_ADMIN_PORT: expected a port between 1 and 65535, got '-1'");
}

TEST_CASE("hostile input: NUL bytes, control characters, huge values") {
  CHECK(parse_error({}, {{"TRELLIS_NAME", std::string("a\0b", 3)}}) ==
        "TRELLIS_NAME: value contains a NUL byte");
  CHECK(parse_error({std::string("--name=a\0b", 10)}) == "--name: value contains a NUL byte");
  CHECK(parse_error({std::string("--fo\0o", 6)}) == "unknown flag --fo\\x00o");
  CHECK(parse_error({"--\x1b[31m"}) == "unknown flag --\\x1b[31m");
  CHECK(parse_error({"--log-level", "\xff\n"}) ==
        "--log-level: unknown value '\\xff\\x0a' (want debug, info, warn or error)");
  std::string huge(1 << 20, '9');
  CHECK(parse_error({"--workers", huge}) ==
        "--workers: expected an integer between 1 and 64, got '" + std::string(64, '9') + "...'");
  CHECK(parse_error({"--" + std::string(100, 'x')}) ==
        "unknown flag --" + std::string(62, 'x') + "...");
  CHECK(parse_ok({"--name", huge}).name.size() == huge.size());
}

TEST_CASE("a bad default is reported on every parse") {
  config::Spec<TestConfig> spec("t", "");
  spec.option({"--workers", "W", "h", "0"}, config::integer(&TestConfig::workers, 1, 64));
  auto r = spec.parse({"--workers", "3"}, config::map_environment({}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message == "--workers (default): expected an integer between 1 and 64, got '0'");
}

TEST_CASE("declaration mistakes are reported by parse") {
  auto declaration_error = [](config::Spec<TestConfig>& spec) {
    auto r = spec.parse({}, config::map_environment({}));
    REQUIRE_FALSE(r.ok());
    return r.error().message;
  };
  auto workers = [] { return config::integer(&TestConfig::workers, 1, 64); };
  for (const char* bad : {"workers", "-w", "--", "---w", "--Workers", "--w_x", "--w-", "--w x"}) {
    config::Spec<TestConfig> spec("t", "");
    spec.option({bad, "", "h", "1"}, workers());
    CHECK(declaration_error(spec) ==
          "invalid flag name '" + std::string(bad) + "' (want --lower-case-words)");
  }
  {
    config::Spec<TestConfig> spec("t", "");
    spec.option({"--help", "", "h", std::nullopt}, config::boolean(&TestConfig::strict));
    CHECK(declaration_error(spec) == "flag --help is reserved");
  }
  for (const char* bad : {"trellis_x", "1X", "X-Y"}) {
    config::Spec<TestConfig> spec("t", "");
    spec.option({"--w", bad, "h", "1"}, workers());
    CHECK(declaration_error(spec) ==
          "--w: invalid environment variable name '" + std::string(bad) + "'");
  }
  {
    config::Spec<TestConfig> spec("t", "");
    spec.option({"--w", "W", "h", "1"}, workers()).option({"--w", "V", "h", "1"}, workers());
    CHECK(declaration_error(spec) == "flag --w is declared twice");
  }
  {
    config::Spec<TestConfig> spec("t", "");
    spec.option({"--w", "W", "h", "1"}, workers()).option({"--v", "W", "h", "1"}, workers());
    CHECK(declaration_error(spec) == "environment variable W is declared twice");
  }
  {
    config::Spec<TestConfig> spec("t", "");
    spec.option({"--w", "", "h", "1"}, workers()).option({"--v", "", "h", "1"}, workers());
    CHECK(spec.parse({}, config::map_environment({})).ok());  // flag-only options share no variable
  }
  {
    config::Spec<TestConfig> spec("t", "");
    spec.option({"--w", "W", "h", "1", true}, workers());
    CHECK(declaration_error(spec) == "--w: a required option cannot have a default");
  }
  {
    config::Spec<TestConfig> spec("t", "");
    spec.positionals("a", "h", &TestConfig::files).positionals("b", "h", &TestConfig::files);
    CHECK(declaration_error(spec) == "positional arguments are declared twice");
  }
  {  // the first mistake is the one reported
    config::Spec<TestConfig> spec("t", "");
    spec.option({"bad", "", "h", "1"}, workers()).option({"--help", "", "h", "1"}, workers());
    CHECK(declaration_error(spec) == "invalid flag name 'bad' (want --lower-case-words)");
  }
}

TEST_CASE("help output is generated from the declarations") {
  CHECK(make_spec(true).help() ==
        "Usage: trellis-test [options] [files...]\n"
        "\n"
        "Exercises every option type.\n"
        "\n"
        "Options:\n"
        "  --workers <int>                      TRELLIS_WORKERS     Worker threads. (default: 2)\n"
        "  --admin-port <port>                  TRELLIS_ADMIN_PORT  Admin listener port. (default: 15020)\n"
        "  --strict                             TRELLIS_STRICT      Refuse non-mesh traffic. (default: false)\n"
        "  --name <string>                      TRELLIS_NAME        Display name. (default: proxy)\n"
        "  --cert <path>                        TRELLIS_CERT        Certificate file. (required)\n"
        "  --namespaces <list>                  TRELLIS_NAMESPACES  Watched namespaces.\n"
        "  --log-level <debug|info|warn|error>  TRELLIS_LOG_LEVEL   Log threshold. (default: info)\n"
        "  --timeout <duration>                 TRELLIS_TIMEOUT     Request timeout. (default: 15s)\n"
        "  --offset <int>                                           Flag-only signed 64-bit value.\n"
        "  --count <int>                        TRELLIS_COUNT       Unsigned 32-bit value.\n"
        "  -h, --help                                               Show this help and exit.\n"
        "\n"
        "Arguments:\n"
        "  files...  Input files.\n");

  config::Spec<TestConfig> flags_only("trellis-certs", "");
  flags_only.option({"--out", "", "Output file.", "ca.pem"}, config::path(&TestConfig::cert));
  CHECK(flags_only.help() ==
        "Usage: trellis-certs [options]\n"
        "\n"
        "Options:\n"
        "  --out <path>  Output file. (default: ca.pem)\n"
        "  -h, --help    Show this help and exit.\n");
}

TEST_CASE("arguments() drops the program name; process_environment() reads the real one") {
  const char* argv[] = {"trellis-proxy", "--workers", "4", nullptr};
  CHECK(config::arguments(3, argv) == Args{"--workers", "4"});
  CHECK(config::arguments(1, argv).empty());
  CHECK(config::arguments(0, argv).empty());

  REQUIRE(setenv("TRELLIS_CONFIG_TEST_VAR", "42", 1) == 0);
  auto env = config::process_environment();
  CHECK(env("TRELLIS_CONFIG_TEST_VAR") == std::optional<std::string>("42"));
  REQUIRE(unsetenv("TRELLIS_CONFIG_TEST_VAR") == 0);
  CHECK(env("TRELLIS_CONFIG_TEST_VAR") == std::nullopt);

  auto map = config::map_environment({{"A", "1"}});
  CHECK(map("A") == std::optional<std::string>("1"));
  CHECK(map("B") == std::nullopt);
}
