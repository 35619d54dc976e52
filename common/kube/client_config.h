// Where the API server is and how to authenticate to it: from a kubeconfig
// file (--kubeconfig) or from the pod's service account (in-cluster).
//
//   auto config = kube::load_client_config(flags.kubeconfig);  // "" → in-cluster
//
// Kubeconfig: JSON, or the YAML kubectl writes (see yaml.h for the subset).
// Read: current-context (or an explicit context), contexts[].context{cluster,
// user, namespace}, clusters[].cluster{server, certificate-authority(-data),
// tls-server-name}, users[].user{client-certificate(-data),
// client-key(-data), token, tokenFile}. Relative file paths are relative to
// the kubeconfig's directory, as kubectl reads them. Refused with an exact,
// path-qualified error: insecure-skip-tls-verify, exec and auth-provider
// plugins, username/password, a server that is not https://, both a file and
// inline data for the same item, token together with tokenFile.
//
// In-cluster: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT and the files
// token, ca.crt and namespace under /var/run/secrets/kubernetes.io/
// serviceaccount (the directory is overridable for tests). The token file is
// re-read whenever it changes, since the kubelet rotates projected tokens.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "common/config/config.h"

namespace trellis::kube {

// What --kubeconfig's help should say (binaries declare the flag themselves).
inline constexpr std::string_view kKubeconfigHelp =
    "Kubeconfig file (JSON, or YAML as kubectl writes it: block maps and lists, plain or quoted "
    "one-line scalars; no anchors, tags or multi-line scalars). Credentials: client certificate, "
    "token or tokenFile (no exec plugins). Unset: in-cluster service account.";

struct ClientConfig {
  std::string host;  // DNS name or IP address (IPv6 without brackets)
  uint16_t port = 443;
  std::string base_path;        // a path prefix of the server URL, "" or "/prefix"
  std::string tls_server_name;  // SNI and certificate name; empty: host
  std::string ca_pem;           // the cluster CA bundle, required
  std::string client_certificate_pem;
  std::string client_key_pem;
  std::string token;       // a fixed bearer token
  std::string token_file;  // a bearer token file, re-read when it changes
  std::string namespace_ = "default";  // the context's or the pod's namespace
  std::string source;                  // for logs: "kubeconfig /path (context x)", "in-cluster"

  // "https://host:port" (IPv6 in brackets), plus the base path.
  std::string server_url() const;
};

// Parses a kubeconfig's text. `context` overrides current-context; `directory`
// anchors relative file paths. Errors are path-qualified ("users[0].user:
// token and tokenFile are mutually exclusive") or name the missing piece
// ("context 'dev' not found").
Result<ClientConfig> parse_kubeconfig(std::string_view text, std::string_view directory,
                                      std::string_view context = {});

// Reads and parses a kubeconfig file. Errors start with "kubeconfig <path>: ".
Result<ClientConfig> load_kubeconfig(const std::string& path, std::string_view context = {});

struct InClusterPaths {
  std::string directory = "/var/run/secrets/kubernetes.io/serviceaccount";
};

// Errors start with "in-cluster config: ", e.g. "in-cluster config:
// KUBERNETES_SERVICE_HOST is not set (not running in a pod? use --kubeconfig)".
Result<ClientConfig> in_cluster_config(const config::Environment& env,
                                       const InClusterPaths& paths = {});

// A kubeconfig when `kubeconfig_path` is set, else in-cluster.
Result<ClientConfig> load_client_config(const std::string& kubeconfig_path,
                                        const config::Environment& env);

// A bearer token file that is re-read when it changes (its mtime, size or
// inode), checked at most once per call of current(). After a failed re-read
// the last good token is kept, so a rotation in progress never fails a request.
// One thread (the client's loop).
class TokenFile {
 public:
  explicit TokenFile(std::string path) : path_(std::move(path)) {}
  // Errors: "token file <path>: No such file or directory", "token file
  // <path>: empty".
  Result<std::string> current();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string token_;
  struct timespec mtime_ {};
  off_t size_ = -1;
  ino_t inode_ = 0;
};

// Reads a whole (small) file: "<path>: <strerror>" on failure, "<path>:
// larger than N bytes" when it exceeds `max_bytes`.
Result<std::string> read_file(const std::string& path, size_t max_bytes = size_t{4} << 20);

// Standard base64 (RFC 4648, with padding) as kubeconfig -data fields use.
// Error: "invalid base64".
Result<std::string> decode_base64(std::string_view text);

}  // namespace trellis::kube
