#include <doctest/doctest.h>

#include <string>

#include "common/kube/objects.h"

namespace kube = trellis::kube;
namespace json = trellis::json;

namespace {

json::Document parse(const std::string& text) {
  auto doc = json::Document::parse(text, {});
  REQUIRE_MESSAGE(doc.ok(), (doc.ok() ? "" : doc.error().message));
  return std::move(doc).value();
}

template <typename T>
std::string error_of(const trellis::Result<T>& r) {
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

}  // namespace

TEST_CASE("ObjectMeta: every field we use, unknown fields ignored") {
  auto doc = parse(R"({"metadata":{"name":"echo","namespace":"shop","uid":"u-1",
      "resourceVersion":"42","generation":3,"creationTimestamp":"2026-01-02T03:04:05Z",
      "deletionTimestamp":"2026-01-02T04:00:00Z","labels":{"app":"echo"},
      "annotations":{"a":"b"},"managedFields":[{"manager":"kubectl"}],
      "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs","uid":"u-0",
                          "controller":true}]},
      "spec":{"whatever":1}})");
  auto meta = kube::decode_object_meta(doc.root());
  REQUIRE(meta.ok());
  CHECK(meta->name == "echo");
  CHECK(meta->namespace_ == "shop");
  CHECK(meta->uid == "u-1");
  CHECK(meta->resource_version == "42");
  CHECK(meta->generation == 3);
  CHECK(meta->creation_timestamp == "2026-01-02T03:04:05Z");
  CHECK(meta->deletion_timestamp == "2026-01-02T04:00:00Z");
  CHECK(meta->labels.at("app") == "echo");
  CHECK(meta->annotations.at("a") == "b");
  REQUIRE(meta->owner_references.size() == 1);
  CHECK(meta->owner_references[0].kind == "ReplicaSet");
  CHECK(meta->owner_references[0].controller);
  CHECK(meta->key() == "shop/echo");
  CHECK(kube::object_key("", "shop") == "shop");
}

TEST_CASE("ObjectMeta errors are path-qualified") {
  CHECK(error_of(kube::decode_object_meta(parse(R"({"spec":{}})").root())) ==
        "(root): missing required field 'metadata'");
  CHECK(error_of(kube::decode_object_meta(parse(R"({"metadata":{"namespace":"a"}})").root())) ==
        "metadata: missing required field 'name'");
  CHECK(error_of(kube::decode_object_meta(
            parse(R"({"metadata":{"name":"a","labels":{"x":1}}})").root())) ==
        "metadata.labels.x: expected a string, got number");
  CHECK(error_of(kube::decode_object_meta(parse(R"({"metadata":{"name":"a","generation":-1}})")
                                              .root())) ==
        "metadata.generation: expected an integer between 0 and 9223372036854775807, got -1");
  CHECK(error_of(kube::decode_object_meta(parse("[]").root())) ==
        "(root): expected an object, got array");
}

TEST_CASE("RawObject keeps the whole object as compact JSON") {
  auto doc = parse(R"({ "metadata": {"name":"r","namespace":"n"}, "spec": {"rules": [1, 2]} })");
  auto raw = kube::decode_raw_object(doc.root());
  REQUIRE(raw.ok());
  CHECK(raw->metadata.key() == "n/r");
  CHECK(raw->json == R"({"metadata":{"name":"r","namespace":"n"},"spec":{"rules":[1,2]}})");
}

TEST_CASE("Service: ports with int and named targetPort, defaults, dual-stack IPs") {
  auto doc = parse(R"({"metadata":{"name":"echo","namespace":"shop"},
      "spec":{"type":"ClusterIP","clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10","fd00::a"],
        "selector":{"app":"echo"},
        "ports":[{"name":"http","port":80,"targetPort":8080,"appProtocol":"http"},
                 {"name":"grpc","port":9090,"targetPort":"grpc-port","protocol":"TCP"},
                 {"port":81}]}})");
  auto svc = kube::decode_service(doc.root());
  REQUIRE_MESSAGE(svc.ok(), (svc.ok() ? "" : svc.error().message));
  CHECK(svc->cluster_ip == "10.96.0.10");
  CHECK(svc->cluster_ips == std::vector<std::string>{"10.96.0.10", "fd00::a"});
  CHECK(svc->selector.at("app") == "echo");
  REQUIRE(svc->ports.size() == 3);
  CHECK(svc->ports[0].target_port == kube::IntOrString{true, 8080, ""});
  CHECK(svc->ports[0].app_protocol == "http");
  CHECK(svc->ports[1].target_port == kube::IntOrString{false, 0, "grpc-port"});
  CHECK_FALSE(svc->ports[1].app_protocol.has_value());
  CHECK(svc->ports[2].target_port == kube::IntOrString{true, 81, ""});  // defaults to port
  CHECK(svc->ports[2].protocol == "TCP");

  auto headless = kube::decode_service(
      parse(R"({"metadata":{"name":"h"},"spec":{"clusterIP":"None"}})").root());
  CHECK(headless->cluster_ips == std::vector<std::string>{"None"});
  CHECK(headless->type == "ClusterIP");
}

TEST_CASE("Service errors") {
  CHECK(error_of(kube::decode_service(
            parse(R"({"metadata":{"name":"a"},"spec":{"ports":[{"port":0}]}})").root())) ==
        "spec.ports[0].port: expected an integer between 1 and 65535, got 0");
  CHECK(error_of(kube::decode_service(
            parse(R"({"metadata":{"name":"a"},"spec":{"ports":[{"port":80,"targetPort":""}]}})")
                .root())) == "spec.ports[0].targetPort: expected a port name or number, got ''");
  CHECK(error_of(kube::decode_service(
            parse(R"({"metadata":{"name":"a"},"spec":{"ports":[{"port":80,"targetPort":true}]}})")
                .root())) ==
        "spec.ports[0].targetPort: expected an integer between 1 and 65535, got boolean");
  CHECK(error_of(kube::decode_service(
            parse(R"({"metadata":{"name":"a"},"spec":{"clusterIPs":"10.0.0.1"}})").root())) ==
        "spec.clusterIPs: expected an array, got string");
}

TEST_CASE("EndpointSlice: endpoints, conditions, ports and the service-name label") {
  auto doc = parse(R"({"metadata":{"name":"echo-abc","namespace":"shop",
        "labels":{"kubernetes.io/service-name":"echo"}},
      "addressType":"IPv4",
      "endpoints":[
        {"addresses":["10.244.0.5"],"conditions":{"ready":true,"serving":true,"terminating":false},
         "targetRef":{"kind":"Pod","namespace":"shop","name":"echo-1","uid":"p1"},"nodeName":"n1"},
        {"addresses":["10.244.0.6"],"conditions":{"ready":false,"serving":true,"terminating":true}},
        {"addresses":["10.244.0.7"]}],
      "ports":[{"name":"http","port":8080,"protocol":"TCP","appProtocol":"kubernetes.io/h2c"},
               {"name":"","port":null}]})");
  auto slice = kube::decode_endpoint_slice(doc.root());
  REQUIRE_MESSAGE(slice.ok(), (slice.ok() ? "" : slice.error().message));
  CHECK(slice->service_name() == "echo");
  CHECK(slice->address_type == "IPv4");
  REQUIRE(slice->endpoints.size() == 3);
  CHECK(slice->endpoints[0].conditions.is_ready());
  CHECK(slice->endpoints[0].target_ref->name == "echo-1");
  CHECK(slice->endpoints[0].node_name == "n1");
  CHECK_FALSE(slice->endpoints[1].conditions.is_ready());
  CHECK(slice->endpoints[1].conditions.is_serving());
  CHECK(slice->endpoints[1].conditions.is_terminating());
  // Unknown readiness reads as ready, as the API says.
  CHECK(slice->endpoints[2].conditions.is_ready());
  CHECK_FALSE(slice->endpoints[2].conditions.ready.has_value());
  REQUIRE(slice->ports.size() == 2);
  CHECK(slice->ports[0].port == 8080);
  CHECK(slice->ports[0].app_protocol == "kubernetes.io/h2c");
  CHECK_FALSE(slice->ports[1].port.has_value());

  CHECK(error_of(kube::decode_endpoint_slice(parse(R"({"metadata":{"name":"a"}})").root())) ==
        "(root): missing required field 'addressType'");
  CHECK(error_of(kube::decode_endpoint_slice(
            parse(R"({"metadata":{"name":"a"},"addressType":"IPv4",
                      "endpoints":[{"addresses":[1]}]})")
                .root())) == "endpoints[0].addresses[0]: expected a string, got number");
  CHECK(error_of(kube::decode_endpoint_slice(
            parse(R"({"metadata":{"name":"a"},"addressType":"IPv4",
                      "endpoints":[{"addresses":[],"conditions":{"ready":"yes"}}]})")
                .root())) == "endpoints[0].conditions.ready: expected a boolean, got string");
}

TEST_CASE("Pod: spec and status fields, readiness") {
  auto doc = parse(R"({"metadata":{"name":"echo-1","namespace":"shop"},
      "spec":{"serviceAccountName":"echo","nodeName":"node-1","hostNetwork":false,
        "initContainers":[{"name":"trellis-init","image":"trellis/init"}],
        "containers":[{"name":"app","image":"echo","ports":[{"name":"http","containerPort":8080}]}]},
      "status":{"phase":"Running","podIP":"10.244.0.5",
        "podIPs":[{"ip":"10.244.0.5"},{"ip":"fd00::5"}],
        "conditions":[{"type":"Initialized","status":"True"},{"type":"Ready","status":"True"}]}})");
  auto pod = kube::decode_pod(doc.root());
  REQUIRE_MESSAGE(pod.ok(), (pod.ok() ? "" : pod.error().message));
  CHECK(pod->service_account_name == "echo");
  CHECK(pod->node_name == "node-1");
  CHECK_FALSE(pod->host_network);
  REQUIRE(pod->containers.size() == 1);
  CHECK(pod->containers[0].ports[0].container_port == 8080);
  CHECK(pod->containers[0].ports[0].protocol == "TCP");
  CHECK(pod->init_containers[0].name == "trellis-init");
  CHECK(pod->phase == "Running");
  CHECK(pod->pod_ips == std::vector<std::string>{"10.244.0.5", "fd00::5"});
  CHECK(pod->is_ready());

  auto pending = kube::decode_pod(parse(R"({"metadata":{"name":"p"},"spec":{"containers":[]}})").root());
  CHECK(pending->service_account_name == "default");
  CHECK_FALSE(pending->is_ready());
  CHECK(error_of(kube::decode_pod(
            parse(R"({"metadata":{"name":"p"},"spec":{"containers":[{"image":"x"}]}})").root())) ==
        "spec.containers[0]: missing required field 'name'");
  CHECK(error_of(kube::decode_pod(parse(
            R"({"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":70000}]}]}})")
                                      .root())) ==
        "spec.containers[0].ports[0].containerPort: expected an integer between 1 and 65535, got "
        "70000");
}

TEST_CASE("Namespace and Lease decode; a Lease encodes back") {
  auto ns = kube::decode_namespace(
      parse(R"({"metadata":{"name":"shop","labels":{"trellis.dev/inject":"enabled"}},
                "status":{"phase":"Active"}})")
          .root());
  REQUIRE(ns.ok());
  CHECK(ns->metadata.key() == "shop");
  CHECK(ns->phase == "Active");

  auto lease = kube::decode_lease(parse(R"({"metadata":{"name":"ctl","namespace":"trellis",
      "resourceVersion":"7"},"spec":{"holderIdentity":"pod-a","leaseDurationSeconds":15,
      "acquireTime":"2026-01-02T03:04:05.000000Z","renewTime":"2026-01-02T03:04:07.500000Z",
      "leaseTransitions":2}})")
                                      .root());
  REQUIRE(lease.ok());
  CHECK(lease->spec.holder_identity == "pod-a");
  CHECK(lease->spec.lease_duration_seconds == 15);
  CHECK(lease->spec.lease_transitions == 2);
  CHECK(kube::encode_lease(*lease) ==
        R"({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"ctl",)"
        R"("namespace":"trellis","resourceVersion":"7"},"spec":{"holderIdentity":"pod-a",)"
        R"("leaseDurationSeconds":15,"acquireTime":"2026-01-02T03:04:05.000000Z",)"
        R"("renewTime":"2026-01-02T03:04:07.500000Z","leaseTransitions":2}})");
  auto empty = kube::decode_lease(parse(R"({"metadata":{"name":"x"}})").root());
  CHECK(empty->spec.holder_identity.empty());
  CHECK(error_of(kube::decode_lease(
            parse(R"({"metadata":{"name":"x"},"spec":{"leaseDurationSeconds":-1}})").root())) ==
        "spec.leaseDurationSeconds: expected an integer between 0 and 2147483647, got -1");
}

TEST_CASE("RFC 3339 timestamps parse and MicroTime formats") {
  using std::chrono::system_clock;
  auto t = kube::parse_time("2026-01-02T03:04:05Z");
  REQUIRE(t.ok());
  CHECK(kube::format_micro_time(*t) == "2026-01-02T03:04:05.000000Z");
  CHECK(kube::format_micro_time(kube::parse_time("2026-01-02T03:04:05.123456Z").value()) ==
        "2026-01-02T03:04:05.123456Z");
  CHECK(kube::format_micro_time(kube::parse_time("2026-01-02T05:04:05.5+02:00").value()) ==
        "2026-01-02T03:04:05.500000Z");
  CHECK(kube::format_micro_time(system_clock::from_time_t(0)) == "1970-01-01T00:00:00.000000Z");
  for (const char* bad : {"", "2026-01-02", "2026-01-02T03:04:05", "2026-13-02T03:04:05Z",
                          "2026-02-31T03:04:05Z", "2026-01-02T03:04:05.Z", "2026-01-02T03:04:05Zx",
                          "2026-01-02 03:04:05Z", "2026-01-02T03:04:05+0200"}) {
    CAPTURE(bad);
    CHECK(kube::parse_time(bad).error().message ==
          std::string("invalid RFC 3339 timestamp '") + bad + "'");
  }
}
