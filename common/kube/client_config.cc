#include "common/kube/client_config.h"

#include <fcntl.h>
#include <openssl/base64.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <set>

#include "common/json/json.h"
#include "common/kube/yaml.h"
#include "common/log/log.h"

namespace trellis::kube {

namespace {

constexpr size_t kMaxKubeconfigBytes = size_t{4} << 20;
constexpr std::string_view kUnsupportedCredential =
    "not supported (use a client certificate, token or tokenFile)";

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\n' || s.front() == '\r' ||
                        s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\n' || s.back() == '\r' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

std::string resolve_path(std::string_view directory, std::string_view path) {
  if (path.empty() || path[0] == '/' || directory.empty()) return std::string(path);
  std::string out(directory);
  if (out.back() != '/') out += '/';
  out += path;
  return out;
}

// "https://host[:port][/path]" into the config. Errors name `where`.
Status parse_server(const json::Value& where, std::string_view url, ClientConfig& config) {
  auto bad = [&](std::string_view why) {
    return where.error(std::string(why) + " '" + std::string(url) + "'");
  };
  constexpr std::string_view kScheme = "https://";
  if (url.substr(0, kScheme.size()) != kScheme) return bad("expected an https:// URL, got");
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad("a query or fragment is not allowed in");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  if (authority.find('@') != std::string_view::npos) return bad("user info is not allowed in");
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("invalid host in");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("invalid host in");
      port = after.substr(1);
      if (port.empty()) return bad("invalid port in");
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return bad("invalid port in");
  }
  if (host.empty()) return bad("missing host in");
  config.host = std::string(host);
  config.port = 443;
  if (!port.empty()) {
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || ptr != port.data() + port.size() || value == 0 || value > 65535) {
      return bad("invalid port in");
    }
    config.port = static_cast<uint16_t>(value);
  }
  config.base_path = std::string(path);
  return ok_status();
}

// The "name" → entry map of a kubeconfig list (contexts, clusters, users),
// refusing duplicate names.
Status index_named(const json::Object& root, std::string_view list, std::string_view entry_key,
                   std::map<std::string, json::Object, std::less<>>& out) {
  auto items = root.optional_array(list);
  if (!items) return std::move(items).error();
  if (!*items) return ok_status();
  for (size_t i = 0; i < (*items)->size(); ++i) {
    auto item = (**items)[i].object();
    if (!item) return std::move(item).error();
    auto name = item->required_string("name");
    if (!name) return std::move(name).error();
    auto entry = item->required_object(entry_key);
    if (!entry) return std::move(entry).error();
    if (!out.emplace(std::string(*name), *entry).second) {
      return item->required("name")->error("duplicate name '" + std::string(*name) + "'");
    }
  }
  return ok_status();
}

// Inline "<key>-data" (base64) or the file "<key>", at most one of them; ""
// when neither is given.
Result<std::string> file_or_data(const json::Object& o, std::string_view key,
                                 std::string_view directory) {
  std::string data_key = std::string(key) + "-data";
  auto data = o.optional_string(data_key);
  if (!data) return std::move(data).error();
  auto file = o.optional_string(key);
  if (!file) return std::move(file).error();
  if (*data && *file) {
    return o.error(std::string(key) + " and " + data_key + " are mutually exclusive");
  }
  if (*data) {
    auto decoded = decode_base64(**data);
    if (!decoded) return o.find(data_key)->error(decoded.error().message);
    return decoded;
  }
  if (*file) {
    auto content = read_file(resolve_path(directory, **file));
    if (!content) return o.find(key)->error(content.error().message);
    return content;
  }
  return std::string();
}

Status read_cluster(const json::Object& cluster, std::string_view directory,
                    ClientConfig& config) {
  auto insecure = cluster.optional_bool("insecure-skip-tls-verify");
  if (!insecure) return std::move(insecure).error();
  if (insecure->value_or(false)) {
    return cluster.find("insecure-skip-tls-verify")
        ->error("not supported; give the cluster's CA (certificate-authority or "
                "certificate-authority-data)");
  }
  auto server = cluster.required_string("server");
  if (!server) return std::move(server).error();
  if (auto s = parse_server(*cluster.find("server"), *server, config); !s.ok()) return s;
  auto tls_name = cluster.optional_string("tls-server-name");
  if (!tls_name) return std::move(tls_name).error();
  if (*tls_name) config.tls_server_name = std::string(**tls_name);
  if (cluster.find("proxy-url")) {
    return cluster.find("proxy-url")->error("not supported");
  }
  auto ca = file_or_data(cluster, "certificate-authority", directory);
  if (!ca) return std::move(ca).error();
  if (ca->empty()) {
    return cluster.error("certificate-authority or certificate-authority-data is required");
  }
  config.ca_pem = std::move(*ca);
  return ok_status();
}

Status read_user(const json::Object& user, std::string_view directory, ClientConfig& config) {
  for (std::string_view unsupported : {"exec", "auth-provider", "username", "password"}) {
    if (auto v = user.find(unsupported)) {
      return v->error(kUnsupportedCredential);
    }
  }
  auto cert = file_or_data(user, "client-certificate", directory);
  if (!cert) return std::move(cert).error();
  auto key = file_or_data(user, "client-key", directory);
  if (!key) return std::move(key).error();
  if (!cert->empty() && key->empty()) return user.error("a client certificate needs a client key");
  if (cert->empty() && !key->empty()) return user.error("a client key needs a client certificate");
  auto token = user.optional_string("token");
  if (!token) return std::move(token).error();
  auto token_file = user.optional_string("tokenFile");
  if (!token_file) return std::move(token_file).error();
  if (*token && *token_file) return user.error("token and tokenFile are mutually exclusive");
  config.client_certificate_pem = std::move(*cert);
  config.client_key_pem = std::move(*key);
  if (*token) {
    if ((*token)->empty()) return user.find("token")->error("empty token");
    config.token = std::string(**token);
  }
  if (*token_file) {
    config.token_file = resolve_path(directory, **token_file);
    TokenFile file(config.token_file);
    if (auto t = file.current(); !t.ok()) return user.find("tokenFile")->error(t.error().message);
  }
  return ok_status();
}

}  // namespace

std::string ClientConfig::server_url() const {
  bool ipv6 = host.find(':') != std::string::npos;
  std::string url = "https://";
  url += ipv6 ? "[" + host + "]" : host;
  url += ":" + std::to_string(port);
  url += base_path;
  return url;
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(path + ": " + std::strerror(errno), errno);
  std::string out;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return make_error(path + ": " + std::strerror(err), err);
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      ::close(fd);
      return make_error(path + ": larger than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

Result<std::string> decode_base64(std::string_view text) {
  size_t max_len = 0;
  if (!EVP_DecodedLength(&max_len, text.size())) return make_error("invalid base64");
  std::string out(max_len, '\0');
  size_t len = 0;
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &len, max_len,
                        reinterpret_cast<const uint8_t*>(text.data()), text.size())) {
    return make_error("invalid base64");
  }
  out.resize(len);
  return out;
}

Result<std::string> TokenFile::current() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    Error error = make_error("token file " + path_ + ": " + std::strerror(errno));
    if (token_.empty()) return error;
    log::warn("kube: keeping the last token", {{"error", error.message}});
    return token_;
  }
  bool changed = st.st_mtim.tv_sec != mtime_.tv_sec || st.st_mtim.tv_nsec != mtime_.tv_nsec ||
                 st.st_size != size_ || st.st_ino != inode_;
  if (!changed && !token_.empty()) return token_;
  auto content = read_file(path_, 64 * 1024);
  std::string token = content.ok() ? trim(*content) : std::string();
  if (!content.ok() || token.empty()) {
    Error error = content.ok() ? make_error("token file " + path_ + ": empty")
                               : make_error("token file " + content.error().message);
    if (token_.empty()) return error;
    log::warn("kube: keeping the last token", {{"error", error.message}});
    return token_;
  }
  token_ = std::move(token);
  mtime_ = st.st_mtim;
  size_ = st.st_size;
  inode_ = st.st_ino;
  return token_;
}

Result<ClientConfig> parse_kubeconfig(std::string_view text, std::string_view directory,
                                      std::string_view context) {
  std::string json_text;
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '{') {
    json_text = std::string(text);
  } else {
    auto converted = yaml_to_json(text);
    if (!converted) return std::move(converted).error();
    json_text = std::move(*converted);
  }
  auto doc = json::Document::parse(json_text, json::Limits{kMaxKubeconfigBytes * 2, 32});
  if (!doc) return std::move(doc).error();
  auto root = doc->root().object();
  if (!root) return std::move(root).error();

  std::string context_name(context);
  if (context_name.empty()) {
    auto current = root->optional_string("current-context");
    if (!current) return std::move(current).error();
    if (!*current || (*current)->empty()) {
      return make_error("current-context is not set and no context was given");
    }
    context_name = std::string(**current);
  }
  std::map<std::string, json::Object, std::less<>> contexts, clusters, users;
  if (auto s = index_named(*root, "contexts", "context", contexts); !s.ok()) {
    return std::move(s).error();
  }
  if (auto s = index_named(*root, "clusters", "cluster", clusters); !s.ok()) {
    return std::move(s).error();
  }
  if (auto s = index_named(*root, "users", "user", users); !s.ok()) return std::move(s).error();

  auto ctx = contexts.find(context_name);
  if (ctx == contexts.end()) return make_error("context '" + context_name + "' not found");
  auto cluster_name = ctx->second.required_string("cluster");
  if (!cluster_name) return std::move(cluster_name).error();
  auto user_name = ctx->second.optional_string("user");
  if (!user_name) return std::move(user_name).error();
  auto ns = ctx->second.optional_string("namespace");
  if (!ns) return std::move(ns).error();

  ClientConfig config;
  auto cluster = clusters.find(*cluster_name);
  if (cluster == clusters.end()) {
    return make_error("context '" + context_name + "': cluster '" + std::string(*cluster_name) +
                      "' not found");
  }
  if (auto s = read_cluster(cluster->second, directory, config); !s.ok()) {
    return std::move(s).error();
  }
  if (*user_name && !(*user_name)->empty()) {
    auto user = users.find(**user_name);
    if (user == users.end()) {
      return make_error("context '" + context_name + "': user '" + std::string(**user_name) +
                        "' not found");
    }
    if (auto s = read_user(user->second, directory, config); !s.ok()) {
      return std::move(s).error();
    }
  }
  if (*ns && !(*ns)->empty()) config.namespace_ = std::string(**ns);
  config.source = "context " + context_name;
  return config;
}

Result<ClientConfig> load_kubeconfig(const std::string& path, std::string_view context) {
  auto prefixed = [&](const Error& e) {
    return make_error("kubeconfig " + path + ": " + e.message);
  };
  auto text = read_file(path, kMaxKubeconfigBytes);
  if (!text) {
    // read_file names the path already.
    return make_error("kubeconfig " + text.error().message);
  }
  size_t slash = path.rfind('/');
  std::string directory = slash == std::string::npos ? std::string(".") : path.substr(0, slash + 1);
  auto config = parse_kubeconfig(*text, directory, context);
  if (!config) return prefixed(config.error());
  config->source = "kubeconfig " + path + " (" + config->source + ")";
  return config;
}

Result<ClientConfig> in_cluster_config(const config::Environment& env,
                                       const InClusterPaths& paths) {
  auto fail = [](std::string message) { return make_error("in-cluster config: " + message); };
  auto host = env("KUBERNETES_SERVICE_HOST");
  if (!host || host->empty()) {
    return fail("KUBERNETES_SERVICE_HOST is not set (not running in a pod? use --kubeconfig)");
  }
  auto port_text = env("KUBERNETES_SERVICE_PORT");
  if (!port_text || port_text->empty()) {
    return fail("KUBERNETES_SERVICE_PORT is not set (not running in a pod? use --kubeconfig)");
  }
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(port_text->data(), port_text->data() + port_text->size(), port);
  if (ec != std::errc() || ptr != port_text->data() + port_text->size() || port == 0 ||
      port > 65535) {
    return fail("KUBERNETES_SERVICE_PORT: expected a port, got '" + *port_text + "'");
  }
  ClientConfig config;
  config.host = *host;
  config.port = static_cast<uint16_t>(port);
  std::string dir = paths.directory;
  if (!dir.empty() && dir.back() != '/') dir += '/';
  config.token_file = dir + "token";
  TokenFile token(config.token_file);
  if (auto t = token.current(); !t.ok()) return fail(t.error().message);
  auto ca = read_file(dir + "ca.crt");
  if (!ca) return fail(ca.error().message);
  config.ca_pem = std::move(*ca);
  if (auto ns = read_file(dir + "namespace"); ns.ok() && !trim(*ns).empty()) {
    config.namespace_ = trim(*ns);
  }
  config.source = "in-cluster";
  return config;
}

Result<ClientConfig> load_client_config(const std::string& kubeconfig_path,
                                        const config::Environment& env) {
  if (!kubeconfig_path.empty()) return load_kubeconfig(kubeconfig_path);
  return in_cluster_config(env);
}

}  // namespace trellis::kube
