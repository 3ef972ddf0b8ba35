#include "portcullis/config/snapshot.hh"

#include "portcullis/queue/fingerprint.hh"

#include <algorithm>

namespace portcullis::config {

namespace {

// Calls f(segment) for each segment of a path that starts with '/'.
template <typename F>
bool for_each_segment(std::string_view path, F&& f) {
    if (path.empty() || path[0] != '/') {
        return false;
    }
    path.remove_prefix(1);
    while (true) {
        size_t slash = path.find('/');
        if (!f(path.substr(0, slash))) {
            return false;
        }
        if (slash == std::string_view::npos) {
            return true;
        }
        path.remove_prefix(slash + 1);
    }
}

} // namespace

bool Route::allows_method(std::string_view method) const {
    for (const std::string& m : config->methods) {
        if (m == method) {
            return true;
        }
    }
    return false;
}

bool Route::matches(std::string_view path) const {
    size_t i = 0;
    bool ok = for_each_segment(path, [&](std::string_view seg) {
        if (i >= segments.size()) {
            return false;
        }
        bool match = is_param[i] ? !seg.empty() : seg == segments[i];
        ++i;
        return match;
    });
    return ok && i == segments.size();
}

std::string_view Route::path_param(std::string_view path, std::string_view name) const {
    size_t i = 0;
    std::string_view found;
    for_each_segment(path, [&](std::string_view seg) {
        if (i < segments.size() && is_param[i] &&
            std::string_view(segments[i]).substr(1, segments[i].size() - 2) == name) {
            found = seg;
            return false;
        }
        ++i;
        return true;
    });
    return found;
}

std::unique_ptr<Snapshot> Snapshot::build(Config cfg, std::string& error) {
    auto snap = std::unique_ptr<Snapshot>(new Snapshot);
    snap->_config = std::move(cfg);
    snap->_routes.reserve(snap->_config.routes.size());
    snap->_deny = admit::CidrSet(snap->_config.server.deny);
    snap->_trusted_proxies = admit::CidrSet(snap->_config.server.trusted_proxies);
    for (const RouteConfig& rc : snap->_config.routes) {
        Route r;
        r.config = &rc;
        r.index = static_cast<uint32_t>(snap->_routes.size());
        r.slot = r.index;
        r.key_seed = queue::route_seed(rc.name);
        r.allow = admit::CidrSet(rc.allow);
        if (rc.rate_limit && rc.rate_limit->per_ip) {
            r.per_ip_limit = admit::Limit::from(*rc.rate_limit->per_ip, rc.rate_limit->burst);
        }
        if (rc.rate_limit && rc.rate_limit->route) {
            r.route_limit = admit::Limit::from(*rc.rate_limit->route,
                                               static_cast<uint32_t>(rc.rate_limit->route->count));
        }
        std::string verr;
        r.verifier = verify::make_verifier(rc.verify, verr);
        if (!r.verifier) {
            error = "route " + rc.name + ": " + verr;
            return nullptr;
        }
        r.stored_fields.secret_header = r.verifier->secret_header();
        for (const std::string& name : rc.keep_headers) {
            r.stored_fields.kept_credentials |= http::credential_bit(name);
        }
        r.allow_header = "Allow: ";
        for (size_t i = 0; i < rc.methods.size(); ++i) {
            r.allow_header += (i == 0 ? "" : ", ") + rc.methods[i];
        }
        r.allow_header += "\r\n";
        for_each_segment(rc.path, [&](std::string_view seg) {
            bool param = seg.size() >= 2 && seg.front() == '{' && seg.back() == '}';
            r.segments.emplace_back(seg);
            r.is_param.push_back(param);
            return true;
        });
        snap->_routes.push_back(std::move(r));
    }
    return snap;
}

std::string Snapshot::fits(const RouteSlots& slots) const {
    size_t fresh = 0;
    for (const Route& r : _routes) {
        fresh += slots.known(r.config->name) ? 0 : 1;
    }
    if (slots.size() + fresh > RouteSlots::capacity) {
        return "more than " + std::to_string(RouteSlots::capacity) +
               " route names since the start: restart to serve " + std::to_string(fresh) +
               " new ones";
    }
    return "";
}

void Snapshot::number(uint64_t generation, RouteSlots& slots) {
    for (Route& r : _routes) {
        r.slot = slots.assign(r.config->name).value_or(r.slot);
    }
    _generation = generation;
}

RouteSlots::RouteSlots() : _names(std::make_unique<std::string[]>(capacity)) {}

std::optional<uint32_t> RouteSlots::assign(std::string_view name) {
    if (auto it = _by_name.find(std::string(name)); it != _by_name.end()) {
        return it->second;
    }
    const uint32_t n = _count.load(std::memory_order_relaxed);
    if (n == capacity) {
        return std::nullopt;
    }
    _names[n] = name;
    _by_name.emplace(name, n);
    // The name is written before the count that makes it visible.
    _count.store(n + 1, std::memory_order_release);
    return n;
}

std::string_view RouteSlots::name(uint32_t slot) const {
    return slot < size() ? std::string_view(_names[slot]) : std::string_view();
}

const Route* Snapshot::match(std::string_view path) const {
    // A literal segment is more specific than a {param} one: /jobs/latest wins over /jobs/{id}
    // whatever their order in the configuration. The loader refuses equal shapes and paths that
    // share a request path without nesting (config/routes.hh), so the matching routes nest and
    // the one with the fewest {param} segments is the one literal wherever the others are.
    const Route* best = nullptr;
    size_t best_params = 0;
    for (const Route& r : _routes) {
        if (!r.matches(path)) {
            continue;
        }
        size_t params = static_cast<size_t>(std::count(r.is_param.begin(), r.is_param.end(), true));
        if (best == nullptr || params < best_params) {
            best = &r;
            best_params = params;
        }
    }
    return best;
}

} // namespace portcullis::config
