// Route paths for the loader: the shape a route's `path` must have, and how two routes' paths
// relate, so that a configuration where the router could not choose between two routes is
// refused at load instead of being settled by the order of declaration.
//
// The router (Snapshot::match) takes, of the routes whose path matches a request, the one with
// the fewest {param} segments, and only then looks at the method. That choice is sound only when
// the matching routes nest: each is literal wherever the next is literal, and more. Two paths
// that share a request path without nesting (/webhooks/{x}/y and /webhooks/z/{w} both match
// /webhooks/z/y) are ambiguous, and so are two paths of the same shape whatever their methods.
//
//   std::string why;
//   auto a = parse_route_path("/jobs/{id}", why);
//   auto b = parse_route_path("/jobs/latest", why);
//   relate(*b, *a) == PathRelation::narrower; // /jobs/latest wins for that one path
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::config::detail {

struct RoutePath {
    struct Segment {
        std::string text; // a literal as written (percent escapes kept), or a parameter's name
        bool param = false;
    };
    std::vector<Segment> segments; // "/" is one empty literal segment

    bool has_param(std::string_view name) const;
};

// Parses a route's path: '/' then segments of RFC 3986 pchars (percent escapes well formed), a
// segment being either literal or a whole {name} of [a-z0-9_], each name once. /healthz is
// reserved. On failure returns nullopt and sets why (user text in it is quoted).
std::optional<RoutePath> parse_route_path(std::string_view path, std::string& why);

enum class PathRelation : uint8_t {
    disjoint, // no request path matches both
    same,     // the same shape: they match the same request paths
    narrower, // a matches a strict subset of b's paths: a literal wherever they differ
    wider,    // b matches a strict subset of a's paths
    crossing, // they share request paths but neither contains the other
};

// A {param} matches any non-empty segment, a literal only itself; paths of different segment
// counts never share a request path.
PathRelation relate(const RoutePath& a, const RoutePath& b);

// A request path that both a and b match (precondition: relate(a, b) != disjoint): the literal
// of whichever has one at each position; where both have a {param}, a's parameter name.
std::string shared_path(const RoutePath& a, const RoutePath& b);

} // namespace portcullis::config::detail
