#include "common/kube/resource.h"

namespace trellis::kube {

std::string Resource::label() const {
  return group.empty() ? resource : resource + "." + group;
}

std::string Resource::api_version() const {
  return group.empty() ? version : group + "/" + version;
}

Status check_path_segment(std::string_view what, std::string_view value) {
  bool bad = value.empty() || value == "." || value == "..";
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '/' || c == '%' || c == '?' || c == '#' || u <= 0x20 || u == 0x7f) bad = true;
  }
  if (bad) return make_error("invalid " + std::string(what) + " '" + std::string(value) + "'");
  return ok_status();
}

namespace {

std::string api_root(const Resource& resource) {
  if (resource.group.empty()) return "/api/" + resource.version;
  return "/apis/" + resource.group + "/" + resource.version;
}

}  // namespace

Result<std::string> collection_path(const Resource& resource, std::string_view ns) {
  std::string path = api_root(resource);
  if (!resource.namespaced) {
    if (!ns.empty()) {
      return make_error(resource.resource + " is cluster-scoped: namespace '" + std::string(ns) +
                        "' not allowed");
    }
  } else if (!ns.empty()) {
    if (auto s = check_path_segment("namespace", ns); !s.ok()) return std::move(s).error();
    path += "/namespaces/";
    path += ns;
  }
  path += "/";
  path += resource.resource;
  return path;
}

Result<std::string> object_path(const Resource& resource, std::string_view ns,
                                std::string_view name, std::string_view subresource) {
  if (resource.namespaced && ns.empty()) {
    return make_error(resource.resource + " is namespaced: a namespace is required");
  }
  auto path = collection_path(resource, ns);
  if (!path.ok()) return path;
  if (auto s = check_path_segment("name", name); !s.ok()) return std::move(s).error();
  *path += "/";
  *path += name;
  if (!subresource.empty()) {
    if (auto s = check_path_segment("subresource", subresource); !s.ok()) {
      return std::move(s).error();
    }
    *path += "/";
    *path += subresource;
  }
  return path;
}

std::string percent_encode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    bool unreserved = (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

std::string query_string(const ListOptions& options) {
  std::string query;
  auto add = [&query](std::string_view key, std::string_view value) {
    query += query.empty() ? '?' : '&';
    query += key;
    query += '=';
    query += percent_encode(value);
  };
  if (!options.label_selector.empty()) add("labelSelector", options.label_selector);
  if (!options.field_selector.empty()) add("fieldSelector", options.field_selector);
  if (options.limit) add("limit", std::to_string(*options.limit));
  if (!options.continue_token.empty()) add("continue", options.continue_token);
  if (!options.resource_version.empty()) add("resourceVersion", options.resource_version);
  if (!options.resource_version_match.empty()) {
    add("resourceVersionMatch", options.resource_version_match);
  }
  if (options.watch) add("watch", "true");
  if (options.allow_watch_bookmarks) add("allowWatchBookmarks", "true");
  if (options.timeout_seconds) add("timeoutSeconds", std::to_string(*options.timeout_seconds));
  return query;
}

}  // namespace trellis::kube
