#include "common/json/json.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using trellis::json::Document;
using trellis::json::Limits;
using trellis::json::Type;
using trellis::json::Writer;

namespace {

Document parse_ok(std::string_view text, const Limits& limits = Limits{}) {
  auto doc = Document::parse(text, limits);
  REQUIRE_MESSAGE(doc.ok(), (doc.ok() ? std::string() : doc.error().message));
  return std::move(doc).value();
}

std::string parse_error(std::string_view text, const Limits& limits = Limits{}) {
  auto doc = Document::parse(text, limits);
  REQUIRE_FALSE(doc.ok());
  return doc.error().message;
}

constexpr std::string_view kTable = R"({
  "version": "v1",
  "services": [
    {"name": "echo", "ports": [{"port": 80}, {"port": 70000}, {"port": "http"}, {"port": 1.5}]},
    {"name": 7, "ports": null, "weight": 1e3}
  ]
})";

}  // namespace

TEST_CASE("typed accessors read a document") {
  Document doc = parse_ok(kTable);
  auto root = doc.root().object();
  REQUIRE(root.ok());
  CHECK(*root->required_string("version") == "v1");
  auto services = root->required_array("services");
  REQUIRE(services.ok());
  CHECK(services->size() == 2);
  auto first = (*services)[0].object();
  REQUIRE(first.ok());
  CHECK(*first->required_string("name") == "echo");
  auto ports = first->required_array("ports");
  REQUIRE(ports.ok());
  auto port0 = (*ports)[0].object();
  CHECK(*port0->required_integer("port", 1, 65535) == 80);
  CHECK(doc.root().type() == Type::object);
  CHECK(doc.root().path().empty());
}

TEST_CASE("errors name the value by its path from the root") {
  Document doc = parse_ok(kTable);
  auto root = *doc.root().object();
  auto services = *root.required_array("services");
  auto ports = *(*services[0].object()).required_array("ports");

  auto range = (*ports[1].object()).required_integer("port", 1, 65535);
  REQUIRE_FALSE(range.ok());
  CHECK(range.error().message ==
        "services[0].ports[1].port: expected an integer between 1 and 65535, got 70000");

  auto type = (*ports[2].object()).required_integer("port", 1, 65535);
  CHECK(type.error().message ==
        "services[0].ports[2].port: expected an integer between 1 and 65535, got string");

  auto fraction = (*ports[3].object()).required_integer("port", 1, 65535);
  CHECK(fraction.error().message ==
        "services[0].ports[3].port: expected an integer between 1 and 65535, got 1.5");

  auto second = *services[1].object();
  CHECK(second.required_string("name").error().message ==
        "services[1].name: expected a string, got number");
  CHECK(second.optional_integer("weight", 0, 100).error().message ==
        "services[1].weight: expected an integer between 0 and 100, got 1000.0");
  CHECK(second.required("namespace").error().message ==
        "services[1]: missing required field 'namespace'");

  auto unbounded = (*second.required("name")).integer();
  CHECK(*unbounded == 7);
  CHECK((*second.required("name")).boolean().error().message ==
        "services[1].name: expected a boolean, got number");
  CHECK(root.required_object("services").error().message ==
        "services: expected an object, got array");
  CHECK(root.required_array("version").error().message == "version: expected an array, got string");
  CHECK(doc.root().array().error().message == "(root): expected an array, got object");
  CHECK(doc.root().error("custom").message == "(root): custom");
}

TEST_CASE("null reads as absent and unknown fields are ignored") {
  Document doc = parse_ok(R"({"a": null, "b": true, "extra": {"x": [1, 2]}})");
  auto root = *doc.root().object();
  CHECK_FALSE(root.find("a").has_value());
  CHECK_FALSE((*root.optional_string("a")).has_value());
  CHECK(root.required("a").error().message == "(root): missing required field 'a'");
  CHECK(**root.optional_bool("b") == true);
  CHECK_FALSE((*root.optional_array("missing")).has_value());
  CHECK_FALSE((*root.optional_object("missing")).has_value());
  CHECK_FALSE((*root.optional_integer("missing", 0, 1)).has_value());
  CHECK(root.optional_string("b").error().message == "b: expected a string, got boolean");
  CHECK(root.size() == 3);
  std::vector<std::string> keys;
  root.for_each([&](std::string_view key, trellis::json::Value) { keys.emplace_back(key); });
  CHECK(keys == std::vector<std::string>{"a", "b", "extra"});
}

TEST_CASE("of duplicate keys the first one wins") {
  Document doc = parse_ok(R"({"k": 1, "k": 2})");
  CHECK(*(*doc.root().object()).required_integer("k", 0, 9) == 1);
}

TEST_CASE("malformed JSON is rejected with the reason and the offset") {
  CHECK(parse_error("") == "invalid JSON at offset 0: The document is empty.");
  CHECK(parse_error("  \n ") == "invalid JSON at offset 4: The document is empty.");
  CHECK(parse_error(R"({"a": 1,})") ==
        "invalid JSON at offset 8: Missing a name for object member.");
  CHECK(parse_error(R"({"a" 1})") ==
        "invalid JSON at offset 5: Missing a colon after a name of object member.");
  CHECK(parse_error(R"({"a": 1 "b": 2})") ==
        "invalid JSON at offset 8: Missing a comma or '}' after an object member.");
  CHECK(parse_error("[1, 2") ==
        "invalid JSON at offset 5: Missing a comma or ']' after an array element.");
  CHECK(parse_error(R"({"a": "unterminated)") ==
        "invalid JSON at offset 19: Missing a closing quotation mark in string.");
  CHECK(parse_error("{} x") ==
        "invalid JSON at offset 3: The document root must not be followed by other values.");
  CHECK(parse_error(R"({"a": tru})") == "invalid JSON at offset 9: Invalid value.");
  CHECK(parse_error(R"({"a": NaN})") == "invalid JSON at offset 6: Invalid value.");
  CHECK(parse_error(R"({"a": 1e999})") ==
        "invalid JSON at offset 6: Number too big to be stored in double.");
  CHECK(parse_error(R"(["\x"])") ==
        "invalid JSON at offset 2: Invalid escape character in string.");
  CHECK(parse_error("[\"\xC3\x28\"]") == "invalid JSON at offset 2: Invalid encoding in string.");
  CHECK(parse_error(std::string_view("{}\0{\"evil\":1}", 13)) ==
        "invalid JSON at offset 2: unexpected NUL byte");
  CHECK(parse_error(std::string_view("[\"a\0b\"]", 7)) ==
        "invalid JSON at offset 3: Missing a closing quotation mark in string.");
}

TEST_CASE("nesting deeper than the limit is rejected without recursion") {
  Limits limits;
  limits.max_depth = 64;
  std::string ok = std::string(64, '[') + std::string(64, ']');
  CHECK(parse_ok(ok, limits).root().is_array());

  // The offset is that of the bracket one level too deep.
  std::string deep = std::string(65, '[') + std::string(65, ']');
  CHECK(parse_error(deep, limits) == "invalid JSON at offset 64: nesting deeper than 64 levels");

  // Far beyond any stack: the iterative parser stops at the limit.
  std::string hostile(1 << 20, '[');
  CHECK(parse_error(hostile, limits) == "invalid JSON at offset 64: nesting deeper than 64 levels");
  std::string objects;
  for (int i = 0; i < 100000; ++i) objects += "{\"a\":";
  CHECK(parse_error(objects, limits) == "invalid JSON at offset 320: nesting deeper than 64 levels");
}

TEST_CASE("the paths of deeply nested values are found") {
  Document doc = parse_ok(R"({"a": [{"b": [[0, {"c": "x"}]]}]})");
  auto a = *(*doc.root().object()).required_array("a");
  auto b = *(*a[0].object()).required_array("b");
  auto inner = *b[0].array();
  auto c = (*inner[1].object()).required_integer("c", 0, 1);
  CHECK(c.error().message == "a[0].b[0][1].c: expected an integer between 0 and 1, got string");
}

TEST_CASE("input larger than the byte limit is rejected before parsing") {
  Limits limits;
  limits.max_bytes = 1024;
  std::string big = "[" + std::string(2000, ' ') + "]";
  CHECK(parse_error(big, limits) == "JSON document of 2002 bytes exceeds the limit of 1024 bytes");

  // A large document within the limit parses.
  std::string many = "[";
  for (int i = 0; i < 200000; ++i) many += (i ? ",\"endpoint\"" : "\"endpoint\"");
  many += "]";
  Document doc = parse_ok(many);
  CHECK((*doc.root().array()).size() == 200000);
}

TEST_CASE("the writer emits compact, escaped, valid JSON") {
  Writer w;
  w.start_object()
      .string_field("name", "a\"b\\c\n")
      .integer_field("port", 8080)
      .bool_field("ready", true)
      .key("none")
      .null()
      .key("list")
      .start_array()
      .integer(-1)
      .string("\xC3\x28")
      .end_array()
      .end_object();
  CHECK(w.view() ==
        "{\"name\":\"a\\\"b\\\\c\\n\",\"port\":8080,\"ready\":true,\"none\":null,\"list\":[-1,\"\xEF\xBF\xBD(\"]}");
  // The output reads back.
  Document doc = parse_ok(w.view());
  CHECK(*(*doc.root().object()).required_string("name") == "a\"b\\c\n");
  CHECK(trellis::json::quote("x\ty") == "\"x\\ty\"");
  CHECK(trellis::json::type_name(Type::boolean) == "boolean");
}
