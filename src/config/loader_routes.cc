// The schema walk of routes: each route's path, methods, dedup, ordering, rate_limit, allow,
// keep_headers and deliver; its verify is loader_verify.cc's.
#include "loader_walker.hh"

#include "portcullis/http/header_policy.hh"

#include <algorithm>
#include <limits>

namespace portcullis::config::detail {

namespace {

// The keys a mapping allows come from the key table (portcullis/config/keys.hh).
constexpr auto route_keys = keys_of<key_count("routes.*")>("routes.*");
constexpr auto dedup_keys = keys_of<key_count("routes.*.dedup")>("routes.*.dedup");
constexpr auto ordering_keys = keys_of<key_count("routes.*.ordering")>("routes.*.ordering");
constexpr auto rate_limit_keys = keys_of<key_count("routes.*.rate_limit")>("routes.*.rate_limit");

// The dedup key each provider documents as its delivery id.
std::optional<std::string_view> default_dedup_key(Scheme s) {
    switch (s) {
    case Scheme::github:
        return "header:x-github-delivery";
    case Scheme::standard:
        return "header:webhook-id";
    case Scheme::stripe:
        return "json:/id";
    case Scheme::shopify:
        return "header:x-shopify-webhook-id";
    case Scheme::slack:
        return "json:/event_id";
    default:
        return std::nullopt;
    }
}

} // namespace

std::optional<RoutePath> Walker::route_path(const YamlNode& n, const std::string& p) {
    auto text = nonempty_string(n, p);
    if (!text) {
        return std::nullopt;
    }
    std::string why;
    auto path = parse_route_path(*text, why);
    if (!path) {
        error(n.mark, p, why);
    }
    return path;
}

std::optional<FieldRef> Walker::field_ref(const YamlNode& n, const std::string& path,
                                          const std::optional<RoutePath>& route_shape,
                                          const std::string& route_path_text) {
    auto text = string(n, path);
    if (!text) {
        return std::nullopt;
    }
    std::string why;
    auto ref = parse_field_ref(*text, &why);
    if (!ref) {
        error(n.mark, path, why + ", found " + quote(*text));
        return std::nullopt;
    }
    if (ref->kind == FieldRef::Kind::path && route_shape && !route_shape->has_param(ref->name)) {
        error(n.mark, path,
              "the route's path " + quote(route_path_text) + " has no {" + ref->name +
                  "} parameter");
        return std::nullopt;
    }
    return ref;
}

void Walker::routes(const YamlNode& map, const std::string& path) {
    for (const YamlNode& member : map.children) {
        std::string p = join_path(path, member.key);
        if (!named_mapping(member, p, "route", "path, verify, ...")) {
            continue;
        }
        RouteConfig r;
        r.name = member.key;
        r.mark = member.key_mark;
        std::optional<RoutePath> shape;
        const YamlNode* path_node = required(member, "path", p);
        route(member, p, r, shape);
        if (shape && path_node != nullptr) {
            check_path_clashes(*shape, r, path_node->mark, join_path(p, "path"));
        }
        _route_paths.push_back(std::move(shape));
        _route_path_marks.push_back(path_node != nullptr ? path_node->mark : member.key_mark);
        _cfg.routes.push_back(std::move(r));
    }
}

// Refuses a route whose path the router could not tell from an earlier route's (routes.hh):
// the same shape, or paths that share a request path without one being more specific.
void Walker::check_path_clashes(const RoutePath& shape, const RouteConfig& r,
                                const SourceMark& mark, const std::string& p) {
    for (size_t i = 0; i < _cfg.routes.size(); ++i) {
        if (!_route_paths[i]) {
            continue;
        }
        const RouteConfig& earlier = _cfg.routes[i];
        const PathRelation relation = relate(shape, *_route_paths[i]);
        if (relation != PathRelation::same && relation != PathRelation::crossing) {
            continue;
        }
        std::string message = quote(r.path, std::string::npos);
        message += relation == PathRelation::same ? " has the same shape as " : " overlaps ";
        message += "route " + earlier.name + "'s path " + quote(earlier.path, std::string::npos) +
                   " (" + detail::format_mark(_route_path_marks[i]) + "): ";
        if (relation == PathRelation::same) {
            message += "a request could not tell them apart (a route is chosen by its path, "
                       "then the method is checked: list every method in one route's "
                       "methods)";
        } else {
            message += "both match " +
                       quote(shared_path(*_route_paths[i], shape), std::string::npos) +
                       " and neither is more specific (literal wherever the other is): no "
                       "route is the clear one for it";
        }
        error(mark, p, std::move(message));
    }
}

void Walker::route(const YamlNode& map, const std::string& p, RouteConfig& r,
                   std::optional<RoutePath>& shape) {
    check_keys(map, p, route_keys);
    if (const YamlNode* n = map.find("path")) {
        shape = route_path(*n, join_path(p, "path"));
        if (shape) {
            r.path = n->value;
        }
    }
    r.methods = {"POST"};
    if (const YamlNode* n = map.find("methods")) {
        methods(*n, join_path(p, "methods"), r);
    }
    bool verify_ok = false;
    if (const YamlNode* n = required(map, "verify", p)) {
        std::string vp = join_path(p, "verify");
        if (!n->is_mapping()) {
            error(n->mark, vp, "expected a mapping (scheme, secrets), found " + describe(*n));
        } else {
            verify_ok = verify(*n, vp, r);
        }
    }
    if (const YamlNode* n = section(map, "dedup", p)) {
        std::string dp = join_path(p, "dedup");
        check_keys(*n, dp, dedup_keys);
        DedupConfig d;
        bool ok = true;
        if (const YamlNode* w = required(*n, "window", dp)) {
            auto v = duration(*w, join_path(dp, "window"), ns_per_ms);
            ok = ok && v.has_value();
            d.window_ns = v.value_or(0);
        } else {
            ok = false;
        }
        if (const YamlNode* k = n->find("key")) {
            auto ref = field_ref(*k, join_path(dp, "key"), shape, r.path);
            ok = ok && ref.has_value();
            if (ref) {
                d.key = std::move(*ref);
            }
        } else if (verify_ok) {
            if (auto def = default_dedup_key(r.verify.scheme)) {
                d.key = *parse_field_ref(*def);
            } else {
                error(owner_mark(*n), join_path(dp, "key"),
                      "dedup.key is required for scheme " +
                          std::string(scheme_name(r.verify.scheme)) +
                          " (it has no standard delivery id)");
                ok = false;
            }
        }
        if (ok) {
            r.dedup = std::move(d);
        }
    }
    if (const YamlNode* n = section(map, "ordering", p)) {
        std::string op = join_path(p, "ordering");
        check_keys(*n, op, ordering_keys);
        OrderingConfig o;
        const YamlNode* k = required(*n, "key", op);
        const YamlNode* t = required(*n, "timestamp", op);
        std::optional<FieldRef> key, ts;
        if (k != nullptr) {
            key = field_ref(*k, join_path(op, "key"), shape, r.path);
        }
        if (t != nullptr) {
            ts = field_ref(*t, join_path(op, "timestamp"), shape, r.path);
        }
        if (key && ts) {
            r.ordering = OrderingConfig{std::move(*key), std::move(*ts)};
        }
    }
    if (const YamlNode* n = section(map, "rate_limit", p)) {
        std::string rp = join_path(p, "rate_limit");
        check_keys(*n, rp, rate_limit_keys);
        RateLimitConfig rl;
        if (const YamlNode* v = n->find("per_ip")) {
            rl.per_ip = rate(*v, join_path(rp, "per_ip"));
        }
        if (const YamlNode* v = n->find("route")) {
            rl.route = rate(*v, join_path(rp, "route"));
        }
        if (const YamlNode* v = n->find("burst")) {
            if (auto b =
                    integer(*v, join_path(rp, "burst"), 1, std::numeric_limits<uint32_t>::max())) {
                rl.burst = static_cast<uint32_t>(*b);
            }
        }
        if (n->find("per_ip") == nullptr && n->find("route") == nullptr) {
            error(owner_mark(*n), rp, "needs per_ip, route or both");
        }
        r.rate_limit = rl;
    }
    if (const YamlNode* n = map.find("allow")) {
        r.allow = cidrs(*n, join_path(p, "allow"));
    }
    if (const YamlNode* n = map.find("max_attempts")) {
        if (auto v = integer(*n, join_path(p, "max_attempts"), 1, 1000)) {
            r.max_attempts = static_cast<uint32_t>(*v);
        }
    }
    if (const YamlNode* n = map.find("durability")) {
        r.durability = choice(*n, join_path(p, "durability"), durabilities);
    }
    if (const YamlNode* n = map.find("keep_headers")) {
        keep_headers(*n, join_path(p, "keep_headers"), r);
    }
    const YamlNode* deliver_node = map.find("deliver");
    if (deliver_node != nullptr) {
        deliver(*deliver_node, join_path(p, "deliver"), r);
    }
    if (const YamlNode* n = map.find("ordered")) {
        std::string op = join_path(p, "ordered");
        r.ordered = choice(*n, op, booleans).value_or(false);
        // A deliver that is not a list is reported already.
        bool none = deliver_node == nullptr ||
                    (deliver_node->is_sequence() && deliver_node->children.empty());
        if (r.ordered && none) {
            error(n->mark, op,
                  "ordered applies to push delivery: it needs deliver (the pull API hands "
                  "out jobs in any order)");
        }
    }
}

// The sinks every job of the route goes to: names out of the sinks section, each once.
void Walker::deliver(const YamlNode& n, const std::string& p, RouteConfig& r) {
    if (list(n, p, "[app, bus]") == nullptr) {
        return;
    }
    for (size_t i = 0; i < n.children.size(); ++i) {
        std::string ip = index_path(p, i);
        auto name = string(n.children[i], ip);
        if (!name) {
            continue;
        }
        if (std::find(_sink_names.begin(), _sink_names.end(), *name) == _sink_names.end()) {
            std::string known;
            for (const std::string& s : _sink_names) {
                known += (known.empty() ? "" : ", ") + s;
            }
            error(n.children[i].mark, ip,
                  "no sink named " + quote(*name) +
                      (known.empty() ? std::string(" (no sinks are defined)")
                                     : " (sinks: " + known + ")"));
        } else if (std::find(r.deliver.begin(), r.deliver.end(), *name) != r.deliver.end()) {
            error(n.children[i].mark, ip, *name + " is listed twice");
        } else {
            r.deliver.push_back(*name);
        }
    }
}

// Only the credentials left out of the spool can be kept: every other field is stored
// already, except the hop-by-hop ones and the route's secret, which are never stored.
void Walker::keep_headers(const YamlNode& n, const std::string& p, RouteConfig& r) {
    if (list(n, p, "[Authorization]") == nullptr) {
        return;
    }
    for (size_t i = 0; i < n.children.size(); ++i) {
        std::string ip = index_path(p, i);
        auto name = header_name(n.children[i], ip);
        if (!name) {
            continue;
        }
        const YamlNode& item = n.children[i];
        if (r.verify.scheme == Scheme::shared_secret && *name == r.verify.header) {
            error(item.mark, ip,
                  quote(item.value) +
                      " carries this route's shared secret (verify.header): it is never stored");
        } else if (http::is_hop_by_hop(*name)) {
            error(item.mark, ip,
                  quote(item.value) + " describes the connection, not the webhook: hop-by-hop "
                                      "fields are never stored");
        } else if (http::credential_bit(*name) == 0) {
            error(item.mark, ip,
                  quote(item.value) +
                      " is stored already: keep_headers names the credentials to keep "
                      "(Authorization, Proxy-Authorization, Cookie)");
        } else if (std::find(r.keep_headers.begin(), r.keep_headers.end(), *name) !=
                   r.keep_headers.end()) {
            error(item.mark, ip, quote(item.value) + " is listed twice");
        } else {
            r.keep_headers.push_back(*name);
        }
    }
}

void Walker::methods(const YamlNode& n, const std::string& p, RouteConfig& r) {
    if (list(n, p, "[POST]") == nullptr) {
        return;
    }
    if (n.children.empty()) {
        error(n.mark, p, "needs at least one method");
        return;
    }
    r.methods.clear();
    for (size_t i = 0; i < n.children.size(); ++i) {
        std::string ip = index_path(p, i);
        auto m = string(n.children[i], ip);
        if (!m) {
            continue;
        }
        // Methods are case-sensitive (RFC 9110 9.1): "post" is not POST.
        bool upper = is_token(*m) && std::none_of(m->begin(), m->end(),
                                                  [](char c) { return c >= 'a' && c <= 'z'; });
        if (!upper) {
            error(n.children[i].mark, ip,
                  "expected an upper-case method like POST, found " + quote(*m));
            continue;
        }
        if (std::find(r.methods.begin(), r.methods.end(), *m) != r.methods.end()) {
            error(n.children[i].mark, ip, *m + " is listed twice");
            continue;
        }
        r.methods.push_back(*m);
    }
}

} // namespace portcullis::config::detail
