#include "routes.hh"

#include "portcullis/config/config.hh"

#include "text.hh"

#include <algorithm>

namespace portcullis::config::detail {

namespace {

bool is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986 pchar, without the '{' and '}' of parameters (checked by the caller).
bool is_path_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-._~!$&'()*+,;=:@").find(c) != std::string_view::npos;
}

// Empty when segment is a valid literal segment of path.
std::string literal_error(std::string_view segment, std::string_view path) {
    for (size_t i = 0; i < segment.size(); ++i) {
        char c = segment[i];
        if (c == '%') {
            if (i + 2 >= segment.size() || !is_hex(segment[i + 1]) || !is_hex(segment[i + 2])) {
                return "'%' must start a %XX escape, in " + quote(path);
            }
            i += 2;
            continue;
        }
        if (c == '{' || c == '}') {
            return "a parameter must be a whole segment (/{name}/), found " + quote(segment);
        }
        if (!is_path_char(c)) {
            return "character " + quote(std::string_view(&c, 1)) +
                   " is not allowed in a URI path (percent-encode it)";
        }
    }
    return {};
}

// Whether the segments at one position can both match some request segment: a {param} matches
// any non-empty segment, so it never meets the empty literal of "/x/".
bool segments_meet(const RoutePath::Segment& a, const RoutePath::Segment& b) {
    if (a.param && b.param) {
        return true;
    }
    if (a.param || b.param) {
        return !(a.param ? b : a).text.empty();
    }
    return a.text == b.text;
}

} // namespace

bool RoutePath::has_param(std::string_view name) const {
    return std::any_of(segments.begin(), segments.end(),
                       [&](const Segment& s) { return s.param && s.text == name; });
}

std::optional<RoutePath> parse_route_path(std::string_view path, std::string& why) {
    if (path.empty() || path[0] != '/') {
        why = "must start with '/', found " + quote(path);
        return std::nullopt;
    }
    if (path == "/healthz") {
        why = "/healthz is reserved for load balancers' health checks";
        return std::nullopt;
    }
    RoutePath out;
    size_t start = 1;
    for (;;) {
        size_t end = path.find('/', start);
        bool last = end == std::string_view::npos;
        std::string_view segment = path.substr(start, last ? std::string_view::npos : end - start);
        if (segment.empty() && !last) {
            why = "empty segment (//) in " + quote(path);
            return std::nullopt;
        }
        if (!segment.empty() && segment.front() == '{') {
            std::string_view name = segment.substr(1);
            if (name.empty() || name.back() != '}' ||
                !is_param_name(name.substr(0, name.size() - 1))) {
                why = "a parameter is a whole segment {name} with a name of [a-z0-9_], found " +
                      quote(segment);
                return std::nullopt;
            }
            name.remove_suffix(1);
            if (out.has_param(name)) {
                why = "parameter {" + std::string(name) + "} appears twice";
                return std::nullopt;
            }
            out.segments.push_back(RoutePath::Segment{std::string(name), true});
        } else {
            why = literal_error(segment, path);
            if (!why.empty()) {
                return std::nullopt;
            }
            out.segments.push_back(RoutePath::Segment{std::string(segment), false});
        }
        if (last) {
            break;
        }
        start = end + 1;
    }
    return out;
}

PathRelation relate(const RoutePath& a, const RoutePath& b) {
    if (a.segments.size() != b.segments.size()) {
        return PathRelation::disjoint;
    }
    bool a_literal_somewhere = false; // a is literal where b has a {param}
    bool b_literal_somewhere = false;
    for (size_t i = 0; i < a.segments.size(); ++i) {
        const RoutePath::Segment& sa = a.segments[i];
        const RoutePath::Segment& sb = b.segments[i];
        if (!segments_meet(sa, sb)) {
            return PathRelation::disjoint;
        }
        a_literal_somewhere = a_literal_somewhere || (!sa.param && sb.param);
        b_literal_somewhere = b_literal_somewhere || (sa.param && !sb.param);
    }
    if (a_literal_somewhere && b_literal_somewhere) {
        return PathRelation::crossing;
    }
    if (a_literal_somewhere) {
        return PathRelation::narrower;
    }
    return b_literal_somewhere ? PathRelation::wider : PathRelation::same;
}

std::string shared_path(const RoutePath& a, const RoutePath& b) {
    std::string out;
    for (size_t i = 0; i < a.segments.size() && i < b.segments.size(); ++i) {
        const RoutePath::Segment& sa = a.segments[i];
        const RoutePath::Segment& sb = b.segments[i];
        out += '/';
        out += sa.param && !sb.param ? sb.text : sa.text;
    }
    return out;
}

} // namespace portcullis::config::detail
