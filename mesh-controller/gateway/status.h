// Writing route status (status.parents[], RouteParentStatus) for the status
// subresource of an HTTPRoute or GRPCRoute.
//
// status.parents is an atomic list (x-kubernetes-list-type: atomic), so a write
// replaces it whole: the body carries every entry, other controllers' entries
// copied verbatim from the object as read, and the object's resourceVersion, so
// that a concurrent change makes the API server answer 409 Conflict instead of
// losing an entry (read-modify-write, as the spec requires).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mesh-controller/gateway/route.h"

namespace trellis::controller::gateway {

// The condition types and reasons Trellis writes (Gateway API v1 names, plus
// Conflicted, which GEP-1294 names but the API defines no constant for).
namespace condition {
inline constexpr std::string_view kAccepted = "Accepted";
inline constexpr std::string_view kResolvedRefs = "ResolvedRefs";
}  // namespace condition
namespace reason {
inline constexpr std::string_view kAccepted = "Accepted";
inline constexpr std::string_view kResolvedRefs = "ResolvedRefs";
inline constexpr std::string_view kNoMatchingParent = "NoMatchingParent";
inline constexpr std::string_view kUnsupportedValue = "UnsupportedValue";
// Accepted=False for a route that a GRPCRoute on the same Service port beats.
inline constexpr std::string_view kConflicted = "Conflicted";
inline constexpr std::string_view kBackendNotFound = "BackendNotFound";
inline constexpr std::string_view kInvalidKind = "InvalidKind";
}  // namespace reason

// metav1.Time: RFC 3339 in UTC with whole seconds ("2026-01-02T03:04:05Z").
std::string format_time(std::chrono::system_clock::time_point time);

// At most this many status.parents[] entries (the CRD's maxItems).
inline constexpr size_t kMaxStatusParents = 32;

// The body of a JSON merge patch (RFC 7386) for the route's status subresource
// that makes `ours` this controller's entries:
//   {"metadata":{"resourceVersion":"..."},"status":{"parents":[...]}}
// Other controllers' entries come first, verbatim and in their order; then
// `ours`, in order, up to kMaxStatusParents entries in all. A condition's
// lastTransitionTime is kept from this controller's current entry for the same
// parentRef when the condition's type and status are unchanged, else set to
// `now` (RFC 3339); the times in `ours` are ignored. Entries of this controller
// for parentRefs no longer in `ours` are dropped.
//
// nullopt when the object already carries exactly this status: no write needed
// (so a status write does not trigger another).
std::optional<std::string> status_patch(const Route& route,
                                        const std::vector<RouteParentStatus>& ours,
                                        std::string_view controller_name, std::string_view now);

}  // namespace trellis::controller::gateway
