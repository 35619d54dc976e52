# shellcheck shell=bash
# Route tables (docs/route-table.md) for namespace "bench".
#
# Frontends every table has:
#   backend   10.96.0.10:80  no route attached (passthrough at L7: the
#                            Service's own endpoints) → the HTTP/1 backend v1
#   split     10.96.0.11:80  HTTPRoute, one rule: backend-v1 weight 80,
#                            backend-v2 weight 20 (two ports of the backend),
#                            with timeouts and a retry policy, as a
#                            production route has them
#   backend-h2 10.96.0.12:80 no route attached → trellis-echo (h2c capable)
# The 10k table adds 10 000 Services (routes_large) on top.

ROUTES_VIP=10.96.0.10
ROUTES_SPLIT_VIP=10.96.0.11
ROUTES_H2_VIP=10.96.0.12
ROUTES_LARGE_SERVICES=10000

# The bench Services and their endpoints, as the two JSON array bodies
# "services" and "endpoints" (no brackets), for the backend chosen.
routes_bench_services() {
  cat <<EOF
{"namespace":"bench","name":"backend","clusterIPs":["$ROUTES_VIP"],
 "ports":[{"name":"http","port":80,"targetPort":${BACKEND_PORTS[0]},"appProtocol":"http"}]},
{"namespace":"bench","name":"split","clusterIPs":["$ROUTES_SPLIT_VIP"],
 "ports":[{"name":"http","port":80,"appProtocol":"http"}],
 "routes":[{"kind":"HTTPRoute","namespace":"bench","name":"split",
   "creationTimestamp":"2026-01-01T00:00:00Z","port":80,
   "rules":[{"backendRefs":[{"name":"backend-v1","port":80,"weight":80},
                            {"name":"backend-v2","port":80,"weight":20}],
             "timeouts":{"request":"10s","backendRequest":"5s"},
             "retry":{"codes":[502,503],"attempts":2,"backoff":"25ms"}}]}]},
{"namespace":"bench","name":"backend-h2","clusterIPs":["$ROUTES_H2_VIP"],
 "ports":[{"name":"http","port":80,"targetPort":${BACKEND_ECHO_PORTS[0]},"appProtocol":"http"}]}
EOF
}

routes_bench_endpoints() {
  cat <<EOF
{"namespace":"bench","service":"backend","port":80,
 "addresses":[{"ip":"$BENCH_BACKEND_IP","port":${BACKEND_PORTS[0]},"pod":"backend-0"}]},
{"namespace":"bench","service":"split","port":80,"addresses":[]},
{"namespace":"bench","service":"backend-v1","port":80,
 "addresses":[{"ip":"$BENCH_BACKEND_IP","port":${BACKEND_PORTS[0]},"pod":"backend-v1-0"}]},
{"namespace":"bench","service":"backend-v2","port":80,
 "addresses":[{"ip":"$BENCH_BACKEND_IP","port":${BACKEND_PORTS[1]},"pod":"backend-v2-0"}]},
{"namespace":"bench","service":"backend-h2","port":80,
 "addresses":[{"ip":"$BENCH_BACKEND_IP","port":${BACKEND_ECHO_PORTS[0]},"pod":"echo-0"}]}
EOF
}

routes_write_small() {  # path
  {
    printf '{"version":"bench-small","namespace":"bench","services":[\n'
    routes_bench_services
    printf '],"endpoints":[\n'
    routes_bench_endpoints
    printf ']}\n'
  } >"$1"
  chmod 644 "$1"
}

# A namespace's table in a cluster of 10 000 Services (the size route-table.md
# plans for): Service svc-N (N = 0..9999) has ClusterIP 10.100.N/250.N%250+1,
# port 80 → 8080 and 5 ready endpoints (50 000 addresses in all, never
# dialled); every 10th Service has an HTTPRoute with two rules (PathPrefix
# /v2 + header → 90/10 split to itself and the next Service; a catch-all) —
# 1 000 routes. Plus the bench Services above.
routes_write_large() {  # path
  {
    printf '{"version":"bench-10k","namespace":"bench","services":[\n'
    routes_bench_services
    awk -v n="$ROUTES_LARGE_SERVICES" 'BEGIN {
      for (i = 0; i < n; i++) {
        printf ",{\"namespace\":\"bench\",\"name\":\"svc-%05d\",\"clusterIPs\":[\"10.100.%d.%d\"],", i, int(i / 250), i % 250 + 1
        printf "\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080,\"appProtocol\":\"http\"}]"
        if (i % 10 == 0) {
          printf ",\"routes\":[{\"kind\":\"HTTPRoute\",\"namespace\":\"bench\",\"name\":\"route-%05d\",", i
          printf "\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"rules\":["
          printf "{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/v2\"},"
          printf "\"headers\":[{\"name\":\"x-canary\",\"value\":\"true\"}]}],"
          printf "\"backendRefs\":[{\"name\":\"svc-%05d\",\"port\":80,\"weight\":90},", i
          printf "{\"name\":\"svc-%05d\",\"port\":80,\"weight\":10}]},", (i + 1) % n
          printf "{\"backendRefs\":[{\"name\":\"svc-%05d\",\"port\":80}]}]}]", i
        }
        printf "}\n"
      }
    }'
    printf '],"endpoints":[\n'
    routes_bench_endpoints
    awk -v n="$ROUTES_LARGE_SERVICES" 'BEGIN {
      for (i = 0; i < n; i++) {
        printf ",{\"namespace\":\"bench\",\"service\":\"svc-%05d\",\"port\":80,\"addresses\":[", i
        for (k = 0; k < 5; k++) {
          a = i * 5 + k
          printf "%s{\"ip\":\"10.%d.%d.%d\",\"port\":8080,\"pod\":\"svc-%05d-%d\"}", (k ? "," : ""), 128 + int(a / 65536), int(a / 256) % 256, a % 256, i, k
        }
        printf "]}\n"
      }
    }'
    printf ']}\n'
  } >"$1"
  chmod 644 "$1"
}
