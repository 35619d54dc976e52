#include "common/log/log.h"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <cmath>
#include <string>
#include <vector>

namespace tlog = trellis::log;

namespace {

struct Capture {
  std::vector<std::string> lines;
  std::chrono::system_clock::time_point now{std::chrono::seconds(1767225600)};  // 2026-01-01

  Capture() {
    tlog::reset_for_test();
    tlog::set_sink([this](std::string_view l) { lines.emplace_back(l); });
    tlog::set_clock([this] { return now; });
  }
  ~Capture() { tlog::reset_for_test(); }

  rapidjson::Document parse(size_t i) const {
    rapidjson::Document d;
    d.Parse(lines.at(i).c_str());
    REQUIRE_FALSE(d.HasParseError());
    return d;
  }
};

}  // namespace

TEST_CASE("a line is one JSON object with ts, level, component, msg and fields") {
  Capture c;
  tlog::set_component("proxy");
  tlog::info("listener started", {{"port", 15001}, {"addr", "0.0.0.0"}, {"reuseport", true},
                                 {"ratio", 0.5}, {"big", 18446744073709551615ull}});
  REQUIRE(c.lines.size() == 1);
  CHECK(c.lines[0].back() == '\n');
  CHECK(c.lines[0].find('\n') == c.lines[0].size() - 1);
  auto d = c.parse(0);
  CHECK(std::string(d["ts"].GetString()) == "2026-01-01T00:00:00.000Z");
  CHECK(std::string(d["level"].GetString()) == "info");
  CHECK(std::string(d["component"].GetString()) == "proxy");
  CHECK(std::string(d["msg"].GetString()) == "listener started");
  CHECK(d["port"].GetInt() == 15001);
  CHECK(std::string(d["addr"].GetString()) == "0.0.0.0");
  CHECK(d["reuseport"].GetBool());
  CHECK(d["ratio"].GetDouble() == 0.5);
  CHECK(d["big"].GetUint64() == 18446744073709551615ull);
}

TEST_CASE("levels below the threshold are dropped") {
  Capture c;
  tlog::set_level(tlog::Level::warn);
  tlog::debug("d");
  tlog::info("i");
  tlog::warn("w");
  tlog::error("e");
  REQUIRE(c.lines.size() == 2);
  CHECK(std::string(c.parse(0)["level"].GetString()) == "warn");
  CHECK(std::string(c.parse(1)["level"].GetString()) == "error");
}

TEST_CASE("parse_level accepts the four names and rejects others with a clear error") {
  CHECK(tlog::parse_level("debug").value() == tlog::Level::debug);
  CHECK(tlog::parse_level("info").value() == tlog::Level::info);
  CHECK(tlog::parse_level("warn").value() == tlog::Level::warn);
  CHECK(tlog::parse_level("warning").value() == tlog::Level::warn);
  CHECK(tlog::parse_level("error").value() == tlog::Level::error);
  auto bad = tlog::parse_level("loud");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "unknown log level 'loud' (want debug, info, warn or error)");
  CHECK_FALSE(tlog::parse_level("").ok());
  CHECK_FALSE(tlog::parse_level("INFO").ok());
}

TEST_CASE("hostile field content still yields valid JSON") {
  Capture c;
  std::string control("a\"b\\c\n\r\t\x01", 9);
  std::string invalid_utf8 = "ok\xff\xfe\xc0\xafz";
  std::string truncated = "\xe2\x82";  // first two bytes of a 3-byte sequence
  tlog::warn("bad request", {{"raw", control}, {"path", invalid_utf8}, {"tail", truncated},
                            {"nan", std::nan("")}, {"inf", HUGE_VAL}});
  REQUIRE(c.lines.size() == 1);
  auto d = c.parse(0);
  CHECK(std::string(d["raw"].GetString()) == control);
  CHECK(std::string(d["path"].GetString()) ==
        "ok\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDz");
  CHECK(std::string(d["tail"].GetString()) == "\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(d["nan"].IsNull());
  CHECK(d["inf"].IsNull());
}

TEST_CASE("repeats of one message are rate-limited and the suppressed count is reported") {
  Capture c;
  tlog::set_rate_limit({3, std::chrono::milliseconds(1000)});
  for (int i = 0; i < 10; ++i) tlog::warn("connect failed", {{"attempt", i}});
  tlog::warn("other message");
  REQUIRE(c.lines.size() == 4);  // three of the flood, then the other message
  CHECK(c.parse(2)["attempt"].GetInt() == 2);
  CHECK_FALSE(c.parse(2).HasMember("suppressed"));

  c.now += std::chrono::milliseconds(1500);
  tlog::warn("connect failed", {{"attempt", 10}});
  REQUIRE(c.lines.size() == 5);
  auto d = c.parse(4);
  CHECK(d["attempt"].GetInt() == 10);
  CHECK(d["suppressed"].GetUint64() == 7);
}

TEST_CASE("a flood of distinct messages keeps logging (bounded tracking, no suppression)") {
  Capture c;
  tlog::set_rate_limit({1, std::chrono::milliseconds(1000)});
  for (int i = 0; i < 3000; ++i) tlog::info("message " + std::to_string(i));
  CHECK(c.lines.size() == 3000);
}
