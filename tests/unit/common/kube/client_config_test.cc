#include <doctest/doctest.h>

#include <map>
#include <string>

#include "common/kube/client_config.h"
#include "tests/unit/common/kube/temp_dir.h"

namespace kube = trellis::kube;
using kube::testing::TempDir;

namespace {

// base64 of "CA PEM", "CERT PEM", "KEY PEM".
constexpr const char* kCaData = "Q0EgUEVN";
constexpr const char* kCertData = "Q0VSVCBQRU0=";
constexpr const char* kKeyData = "S0VZIFBFTQ==";

std::string json_config(const std::string& user, const std::string& cluster_extra = "",
                        const std::string& server = "https://10.77.0.1:6443") {
  return R"({"apiVersion":"v1","kind":"Config","current-context":"dev",
    "contexts":[{"name":"dev","context":{"cluster":"c1","user":"u1","namespace":"shop"}},
                {"name":"other","context":{"cluster":"c2","user":"u2"}},
                {"name":"lost","context":{"cluster":"nowhere","user":"u1"}},
                {"name":"nouser","context":{"cluster":"c1","user":"nobody"}}],
    "clusters":[{"name":"c1","cluster":{"server":")" +
         server + R"(","certificate-authority-data":")" + kCaData + "\"" + cluster_extra +
         R"(}},
                {"name":"c2","cluster":{"server":"https://api.example.com","certificate-authority-data":")" +
         kCaData + R"("}}],
    "users":[{"name":"u1","user":)" + user + R"(},{"name":"u2","user":{"token":"t2"}}]})";
}

std::string cert_user() {
  return std::string(R"({"client-certificate-data":")") + kCertData +
         R"(","client-key-data":")" + kKeyData + R"("})";
}

std::string error_of(const std::string& text, std::string_view context = {}) {
  auto c = kube::parse_kubeconfig(text, "/nonexistent", context);
  REQUIRE_FALSE(c.ok());
  return c.error().message;
}

trellis::config::Environment env(std::map<std::string, std::string> values) {
  return trellis::config::map_environment(std::move(values));
}

}  // namespace

TEST_CASE("a JSON kubeconfig with inline certificates") {
  auto c = kube::parse_kubeconfig(json_config(cert_user()), "/nonexistent");
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  CHECK(c->host == "10.77.0.1");
  CHECK(c->port == 6443);
  CHECK(c->base_path.empty());
  CHECK(c->ca_pem == "CA PEM");
  CHECK(c->client_certificate_pem == "CERT PEM");
  CHECK(c->client_key_pem == "KEY PEM");
  CHECK(c->token.empty());
  CHECK(c->namespace_ == "shop");
  CHECK(c->server_url() == "https://10.77.0.1:6443");
  CHECK(c->source == "context dev");
}

TEST_CASE("an explicit context wins over current-context") {
  auto c = kube::parse_kubeconfig(json_config(cert_user()), "/nonexistent", "other");
  REQUIRE(c.ok());
  CHECK(c->host == "api.example.com");
  CHECK(c->port == 443);
  CHECK(c->token == "t2");
  CHECK(c->namespace_ == "default");
}

TEST_CASE("the YAML the sandbox writes reads like its JSON twin") {
  std::string yaml = std::string(R"(apiVersion: v1
kind: Config
clusters:
- name: trellis-sandbox
  cluster:
    server: https://10.77.0.1:6443
    certificate-authority-data: )") + kCaData + R"(
users:
- name: trellis-admin
  user:
    client-certificate-data: )" + kCertData + R"(
    client-key-data: )" + kKeyData + R"(
contexts:
- name: trellis-sandbox
  context:
    cluster: trellis-sandbox
    user: trellis-admin
current-context: trellis-sandbox
)";
  auto c = kube::parse_kubeconfig(yaml, "/nonexistent");
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  CHECK(c->server_url() == "https://10.77.0.1:6443");
  CHECK(c->ca_pem == "CA PEM");
  CHECK(c->client_certificate_pem == "CERT PEM");
  CHECK(c->client_key_pem == "KEY PEM");
}

TEST_CASE("files are read relative to the kubeconfig's directory") {
  TempDir dir;
  dir.write("ca.crt", "CA FROM FILE");
  dir.write("token", "file-token\n");
  std::string path = dir.write("config", R"({"current-context":"x",
      "contexts":[{"name":"x","context":{"cluster":"c","user":"u"}}],
      "clusters":[{"name":"c","cluster":{"server":"https://[fd00::1]:8443/k8s/clusters/c-1/",
                                         "certificate-authority":"ca.crt",
                                         "tls-server-name":"kubernetes.default"}}],
      "users":[{"name":"u","user":{"tokenFile":"token"}}]})");
  auto c = kube::load_kubeconfig(path);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  CHECK(c->ca_pem == "CA FROM FILE");
  CHECK(c->token_file == dir.file("token"));
  CHECK(c->host == "fd00::1");
  CHECK(c->port == 8443);
  CHECK(c->base_path == "/k8s/clusters/c-1");
  CHECK(c->tls_server_name == "kubernetes.default");
  CHECK(c->server_url() == "https://[fd00::1]:8443/k8s/clusters/c-1");
  CHECK(c->source == "kubeconfig " + path + " (context x)");
}

TEST_CASE("kubeconfig errors are exact") {
  CHECK(error_of(R"({"contexts":[]})") == "current-context is not set and no context was given");
  CHECK(error_of(json_config(cert_user()), "staging") == "context 'staging' not found");
  CHECK(error_of(json_config(cert_user()), "lost") == "context 'lost': cluster 'nowhere' not found");
  CHECK(error_of(json_config(cert_user()), "nouser") == "context 'nouser': user 'nobody' not found");
  CHECK(error_of(json_config(R"({"client-certificate-data":"%%%","client-key-data":"S0VZ"})")) ==
        "users[0].user.client-certificate-data: invalid base64");
  CHECK(error_of(json_config(R"({"token":"a","tokenFile":"/t"})")) ==
        "users[0].user: token and tokenFile are mutually exclusive");
  CHECK(error_of(json_config(R"({"client-certificate-data":"Q0VSVA=="})")) ==
        "users[0].user: a client certificate needs a client key");
  CHECK(error_of(json_config(R"({"client-key-data":"S0VZ"})")) ==
        "users[0].user: a client key needs a client certificate");
  CHECK(error_of(json_config(R"({"client-key-data":"S0VZ","client-key":"k.pem"})")) ==
        "users[0].user: client-key and client-key-data are mutually exclusive");
  CHECK(error_of(json_config(R"({"exec":{"command":"aws"}})")) ==
        "users[0].user.exec: not supported (use a client certificate, token or tokenFile)");
  CHECK(error_of(json_config(R"({"username":"admin","password":"x"})")) ==
        "users[0].user.username: not supported (use a client certificate, token or tokenFile)");
  CHECK(error_of(json_config(R"({"token":""})")) == "users[0].user.token: empty token");
  CHECK(error_of(json_config(R"({"tokenFile":"/nonexistent/token"})")) ==
        "users[0].user.tokenFile: token file /nonexistent/token: No such file or directory");
  CHECK(error_of(json_config(cert_user(), R"(,"insecure-skip-tls-verify":true)")) ==
        "clusters[0].cluster.insecure-skip-tls-verify: not supported; give the cluster's CA "
        "(certificate-authority or certificate-authority-data)");
  CHECK(error_of(json_config(cert_user(), R"(,"certificate-authority":"/ca.crt")")) ==
        "clusters[0].cluster: certificate-authority and certificate-authority-data are mutually "
        "exclusive");
  CHECK(error_of(json_config(cert_user(), "", "http://10.77.0.1:6443")) ==
        "clusters[0].cluster.server: expected an https:// URL, got 'http://10.77.0.1:6443'");
  CHECK(error_of(json_config(cert_user(), "", "https://10.77.0.1:99999")) ==
        "clusters[0].cluster.server: invalid port in 'https://10.77.0.1:99999'");
  CHECK(error_of(json_config(cert_user(), "", "https://:6443")) ==
        "clusters[0].cluster.server: missing host in 'https://:6443'");
  CHECK(error_of(json_config(cert_user(), "", "https://a/?x=1")) ==
        "clusters[0].cluster.server: a query or fragment is not allowed in 'https://a/?x=1'");
  CHECK(error_of(R"({"current-context":"x","contexts":[{"name":"x","context":{"cluster":"c"}}],
      "clusters":[{"name":"c","cluster":{"server":"https://a"}}]})") ==
        "clusters[0].cluster: certificate-authority or certificate-authority-data is required");
  CHECK(error_of(R"({"current-context":"x","contexts":[{"name":"x","context":{"user":"u"}}]})") ==
        "contexts[0].context: missing required field 'cluster'");
  CHECK(error_of(R"({"current-context":"x","contexts":[{"name":"x","context":{"cluster":"c"}},
      {"name":"x","context":{"cluster":"d"}}]})") == "contexts[1].name: duplicate name 'x'");
  CHECK(error_of(R"({"current-context":"x","clusters":{"name":"c"}})") ==
        "clusters: expected an array, got object");
  CHECK(error_of("[]") == "(root): expected an object, got array");
  CHECK(error_of("{\"current-context\": ") ==
        "invalid JSON at offset 20: Invalid value.");
  CHECK(error_of("current-context: x\ncontexts: [a]\n") ==
        "line 2: flow collections are not supported (except {} and [])");
}

TEST_CASE("load_kubeconfig names the file in every error") {
  CHECK(kube::load_kubeconfig("/nonexistent/config").error().message ==
        "kubeconfig /nonexistent/config: No such file or directory");
  TempDir dir;
  std::string path = dir.write("config", "current-context: x\nusers: &a\n");
  CHECK(kube::load_kubeconfig(path).error().message ==
        "kubeconfig " + path + ": line 2: anchors and aliases are not supported");
  std::string missing_ca = dir.write("config2", R"({"current-context":"x",
      "contexts":[{"name":"x","context":{"cluster":"c"}}],
      "clusters":[{"name":"c","cluster":{"server":"https://a","certificate-authority":"ca.crt"}}]})");
  CHECK(kube::load_kubeconfig(missing_ca).error().message ==
        "kubeconfig " + missing_ca + ": clusters[0].cluster.certificate-authority: " + dir.path() +
            "/ca.crt: No such file or directory");
}

TEST_CASE("in-cluster config from the environment and the service-account files") {
  TempDir dir;
  dir.write("token", "sa-token\n");
  dir.write("ca.crt", "CLUSTER CA");
  dir.write("namespace", "trellis\n");
  auto c = kube::in_cluster_config(
      env({{"KUBERNETES_SERVICE_HOST", "10.79.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}),
      {dir.path()});
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  CHECK(c->server_url() == "https://10.79.0.1:443");
  CHECK(c->token_file == dir.file("token"));
  CHECK(c->ca_pem == "CLUSTER CA");
  CHECK(c->namespace_ == "trellis");
  CHECK(c->source == "in-cluster");

  auto v6 = kube::in_cluster_config(
      env({{"KUBERNETES_SERVICE_HOST", "fd00::1"}, {"KUBERNETES_SERVICE_PORT", "6443"}}),
      {dir.path()});
  CHECK(v6->server_url() == "https://[fd00::1]:6443");
  dir.remove("namespace");
  auto no_ns = kube::in_cluster_config(
      env({{"KUBERNETES_SERVICE_HOST", "10.79.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}),
      {dir.path()});
  CHECK(no_ns->namespace_ == "default");
}

TEST_CASE("in-cluster config errors") {
  TempDir dir;
  auto in_cluster = [&](std::map<std::string, std::string> vars) {
    auto c = kube::in_cluster_config(env(std::move(vars)), {dir.path()});
    REQUIRE_FALSE(c.ok());
    return c.error().message;
  };
  CHECK(in_cluster({}) ==
        "in-cluster config: KUBERNETES_SERVICE_HOST is not set (not running in a pod? use "
        "--kubeconfig)");
  CHECK(in_cluster({{"KUBERNETES_SERVICE_HOST", "10.79.0.1"}}) ==
        "in-cluster config: KUBERNETES_SERVICE_PORT is not set (not running in a pod? use "
        "--kubeconfig)");
  CHECK(in_cluster({{"KUBERNETES_SERVICE_HOST", "10.79.0.1"}, {"KUBERNETES_SERVICE_PORT", "http"}}) ==
        "in-cluster config: KUBERNETES_SERVICE_PORT: expected a port, got 'http'");
  CHECK(in_cluster({{"KUBERNETES_SERVICE_HOST", "10.79.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}) ==
        "in-cluster config: token file " + dir.file("token") + ": No such file or directory");
  dir.write("token", "  \n");
  CHECK(in_cluster({{"KUBERNETES_SERVICE_HOST", "10.79.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}) ==
        "in-cluster config: token file " + dir.file("token") + ": empty");
  dir.write("token", "t");
  CHECK(in_cluster({{"KUBERNETES_SERVICE_HOST", "10.79.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}) ==
        "in-cluster config: " + dir.file("ca.crt") + ": No such file or directory");
  // load_client_config: no kubeconfig means in-cluster.
  CHECK(kube::load_client_config("", env({})).error().message ==
        "in-cluster config: KUBERNETES_SERVICE_HOST is not set (not running in a pod? use "
        "--kubeconfig)");
}

TEST_CASE("a token file is re-read when it rotates, and survives a rotation gap") {
  TempDir dir;
  dir.write("token", "first\n");
  kube::TokenFile token(dir.file("token"));
  CHECK(token.current().value() == "first");
  CHECK(token.current().value() == "first");
  dir.write("token", "second-token");
  CHECK(token.current().value() == "second-token");
  dir.remove("token");
  CHECK(token.current().value() == "second-token");  // kept while the file is missing
  dir.write("token", "");
  CHECK(token.current().value() == "second-token");  // and while it is empty
  dir.write("token", "third");
  CHECK(token.current().value() == "third");
}

TEST_CASE("base64 and file helpers") {
  CHECK(kube::decode_base64("aGVsbG8=").value() == "hello");
  CHECK(kube::decode_base64("").value().empty());
  CHECK(kube::decode_base64("aGVsbG8").error().message == "invalid base64");
  CHECK(kube::decode_base64("aGV sbG8=").error().message == "invalid base64");
  TempDir dir;
  dir.write("big", std::string(100, 'x'));
  CHECK(kube::read_file(dir.file("big"), 10).error().message ==
        dir.file("big") + ": larger than 10 bytes");
  CHECK(kube::read_file(dir.file("big")).value().size() == 100);
}
