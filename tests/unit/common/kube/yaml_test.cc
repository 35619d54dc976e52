#include <doctest/doctest.h>

#include <string>

#include "common/kube/yaml.h"

using trellis::kube::yaml_to_json;

namespace {

std::string json_of(const std::string& yaml) {
  auto r = yaml_to_json(yaml);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return *r;
}

std::string error_of(const std::string& yaml) {
  auto r = yaml_to_json(yaml);
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

}  // namespace

TEST_CASE("the kubeconfig kubectl writes") {
  const char* yaml = R"(apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTg==
    server: https://10.77.0.1:6443
  name: trellis-sandbox
contexts:
- context:
    cluster: trellis-sandbox
    namespace: shop
    user: admin
  name: trellis-sandbox
current-context: trellis-sandbox
kind: Config
preferences: {}
users:
- name: admin
  user:
    token: abc.def
)";
  CHECK(json_of(yaml) ==
        R"({"apiVersion":"v1","clusters":[{"cluster":{"certificate-authority-data":"LS0tLS1CRUdJTg==",)"
        R"("server":"https://10.77.0.1:6443"},"name":"trellis-sandbox"}],"contexts":[{"context":)"
        R"({"cluster":"trellis-sandbox","namespace":"shop","user":"admin"},"name":"trellis-sandbox"}],)"
        R"("current-context":"trellis-sandbox","kind":"Config","preferences":{},"users":[{"name":)"
        R"("admin","user":{"token":"abc.def"}}]})");
}

TEST_CASE("indented sequences, nested sequences, comments, markers and CRLF") {
  CHECK(json_of("---\n# comment\nitems:\n  - a\n  - b # trailing\n  -\n    k: v\n...\nignored: x\n") ==
        R"({"items":["a","b",{"k":"v"}]})");
  CHECK(json_of("- - a\n  - b\n- c\n") == R"([["a","b"],"c"])");
  CHECK(json_of("a: 1\r\nb: x\r\n") == R"({"a":1,"b":"x"})");
  CHECK(json_of("") == "null");
  CHECK(json_of("# only a comment\n") == "null");
  CHECK(json_of("plain\n") == R"("plain")");
  CHECK(json_of("a:\n  b:\n    c: d\ne: f\n") == R"({"a":{"b":{"c":"d"}},"e":"f"})");
  CHECK(json_of("a:\nb: 2\n") == R"({"a":null,"b":2})");
  CHECK(json_of("list: []\nmap: {}\n") == R"({"list":[],"map":{}})");
}

TEST_CASE("scalars: core-schema plain values, quoting and escapes") {
  CHECK(json_of("a: null\nb: ~\nc: true\nd: False\ne: -12\nf: +7\ng: 1.5\nh: 0x1F\ni: 99999999999999999999\n") ==
        R"({"a":null,"b":null,"c":true,"d":false,"e":-12,"f":7,"g":"1.5","h":"0x1F","i":"99999999999999999999"})");
  CHECK(json_of("a: 'it''s: #not a comment'\nb: \"tab\\there \\u00e9 \\\"q\\\"\"\n") ==
        R"({"a":"it's: #not a comment","b":"tab\there é \"q\""})");
  CHECK(json_of("\"quoted key\": 'true'\n'x': \"1\"\n") == R"({"quoted key":"true","x":"1"})");
  CHECK(json_of("url: https://host:6443/path#frag\n") == R"({"url":"https://host:6443/path#frag"})");
  CHECK(json_of("a: b:c\n") == R"({"a":"b:c"})");
}

TEST_CASE("everything outside the subset is refused with the line") {
  CHECK(error_of("a: &anchor x\n") == "line 1: anchors and aliases are not supported");
  CHECK(error_of("a: x\nb: *anchor\n") == "line 2: anchors and aliases are not supported");
  CHECK(error_of("a: !!str x\n") == "line 1: tags are not supported");
  CHECK(error_of("a: |\n  text\n") == "line 1: block scalars (| and >) are not supported");
  CHECK(error_of("a: >-\n  text\n") == "line 1: block scalars (| and >) are not supported");
  CHECK(error_of("a: [1, 2]\n") == "line 1: flow collections are not supported (except {} and [])");
  CHECK(error_of("a: {b: 1}\n") == "line 1: flow collections are not supported (except {} and [])");
  CHECK(error_of("a: one\n  two\n") == "line 2: multi-line scalars are not supported");
  CHECK(error_of("a: 'open\n") ==
        "line 1: unterminated quoted string (multi-line scalars are not supported)");
  CHECK(error_of("a: \"x\\q\"\n") == "line 1: unknown escape '\\q' in double-quoted string");
  CHECK(error_of("a: \"\\u12\"\n") == "line 1: invalid escape in double-quoted string");
  CHECK(error_of("a: 1\na: 2\n") == "line 2: duplicate key 'a'");
  CHECK(error_of("a:\n\tb: 1\n") == "line 2: tabs are not allowed in indentation");
  CHECK(error_of("a: 1\n---\nb: 2\n") == "line 2: several documents are not supported");
  CHECK(error_of("%YAML 1.2\na: 1\n") == "line 1: directives are not supported");
  CHECK(error_of("? complex\n") == "line 1: complex mapping keys are not supported");
  CHECK(error_of("a: 1\n- b\n") == "line 2: expected a mapping key, got a sequence entry");
  CHECK(error_of("a:\n    b: 1\n  c: 2\n") == "line 3: bad indentation");
  CHECK(error_of("  a: 1\n") == "line 1: unexpected indentation");
  CHECK(error_of("a: 1\nplain\n") == "line 2: expected 'key: value'");
  CHECK(error_of("a: 'x' y\n") == "line 1: unexpected text after a quoted string");
  CHECK(error_of("a: \x01\n") == "line 1: control characters are not allowed");
  CHECK(error_of(": x\n") == "line 1: empty mapping key");
}

TEST_CASE("nesting is bounded") {
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += std::string(static_cast<size_t>(i) * 2, ' ') + "k:\n";
  CHECK(error_of(deep) == "line 33: nesting deeper than 32 levels");
}
