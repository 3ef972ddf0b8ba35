#include "portcullis/admin/auth.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/http/header.hh"
#include "portcullis/verify/constant_time.hh"

#include <openssl/mem.h>
#include <openssl/sha.h>

#include <algorithm>

namespace portcullis::admin {

namespace {

// Every permission the control plane checks (SPEC section 5). A new endpoint with a new
// permission adds its action here, and the loader then accepts scopes that name it.
struct Resource {
    std::string_view name;
    bool per_route;
    std::array<std::string_view, 4> actions; // unused entries are empty
};

constexpr Resource resources[] = {
    {"jobs", true, {"consume", "read", "replay", "enqueue"}},
    {"metrics", false, {"read"}},
    {"events", false, {"read"}},
    {"admin", false, {"tokens", "reload", "consumers"}},
};

bool has_action(const Resource& r, std::string_view action) {
    return action == "*" ||
           std::find(r.actions.begin(), r.actions.end(), action) != r.actions.end();
}

std::string list_actions(const Resource& r) {
    std::string out;
    for (std::string_view a : r.actions) {
        if (!a.empty()) {
            out.append(a).append(", ");
        }
    }
    out.resize(out.size() - 2);
    return out + " or *";
}

bool is_glob_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' ||
           c == '?';
}

bool fail(std::string* why, std::string message) {
    if (why != nullptr) {
        *why = std::move(message);
    }
    return false;
}

// Scopes come from the configuration and the control plane: escaped, since check prints them.
std::string quoted(std::string_view s) {
    return "\"" + base::escape_text(s) + "\"";
}

// The names of a scope against the table; the route glob only where something is per route.
bool check_names(std::string_view resource, std::string_view action, bool has_glob,
                 std::string* why) {
    bool known_resource = resource == "*";
    bool known_action = false;
    bool routed = false;
    for (const Resource& r : resources) {
        if (resource != "*" && r.name != resource) {
            continue;
        }
        known_resource = true;
        if (has_action(r, action)) {
            known_action = true;
            routed = routed || r.per_route;
        }
    }
    if (!known_resource) {
        return fail(why, "unknown resource " + quoted(resource) +
                             " (jobs, metrics, events, admin or *)");
    }
    if (!known_action) {
        if (resource == "*") {
            return fail(why, "no resource has the action " + quoted(action));
        }
        for (const Resource& r : resources) {
            if (r.name == resource) {
                return fail(why, std::string(resource) + " has no action " + quoted(action) + " (" +
                                     list_actions(r) + ")");
            }
        }
    }
    if (has_glob && !routed) {
        return fail(why, std::string(resource) + ":" + std::string(action) +
                             " is not per route: it takes no route glob");
    }
    return true;
}

void set_if(std::string* why, const char* message) {
    if (why != nullptr) {
        *why = message;
    }
}

} // namespace

bool glob_match(std::string_view glob, std::string_view text) {
    size_t g = 0;
    size_t t = 0;
    // After a '*': where it is in the glob, and the text position it is trying to end at. On a
    // mismatch the star takes one more character and matching resumes after it; an earlier
    // star never needs revisiting, since the later one can absorb whatever it would have.
    size_t star = std::string_view::npos;
    size_t star_end = 0;
    while (t < text.size()) {
        if (g < glob.size() && glob[g] == '*') {
            star = g++;
            star_end = t;
        } else if (g < glob.size() && (glob[g] == '?' || glob[g] == text[t])) {
            ++g;
            ++t;
        } else if (star != std::string_view::npos) {
            g = star + 1;
            t = ++star_end;
        } else {
            return false;
        }
    }
    while (g < glob.size() && glob[g] == '*') {
        ++g;
    }
    return g == glob.size();
}

std::optional<Scope> Scope::parse(std::string_view text, std::string* why) {
    Scope s;
    if (!text.empty() && text[0] == '!') {
        s._deny = true;
        text.remove_prefix(1);
    }
    const size_t first = text.find(':');
    if (first == std::string_view::npos) {
        set_if(why, "missing \":action\"");
        return std::nullopt;
    }
    const std::string_view resource = text.substr(0, first);
    const std::string_view rest = text.substr(first + 1);
    const size_t second = rest.find(':');
    const std::string_view action = rest.substr(0, second);
    if (resource.empty() || action.empty()) {
        set_if(why, resource.empty() ? "empty resource" : "empty action");
        return std::nullopt;
    }
    s._has_glob = second != std::string_view::npos;
    if (s._has_glob) {
        const std::string_view glob = rest.substr(second + 1);
        if (glob.empty()) {
            set_if(why, "empty route glob (leave it out, with its ':', to mean every route)");
            return std::nullopt;
        }
        if (!std::all_of(glob.begin(), glob.end(), is_glob_char)) {
            set_if(why, "a route glob is made of [a-z0-9_-] and the wildcards * and ?");
            return std::nullopt;
        }
        s._glob = glob;
    }
    if (!check_names(resource, action, s._has_glob, why)) {
        return std::nullopt;
    }
    s._resource = resource;
    s._action = action;
    return s;
}

bool Scope::covers(std::string_view resource, std::string_view action) const {
    return (_resource == "*" || _resource == resource) && (_action == "*" || _action == action);
}

bool Scope::covers(std::string_view resource, std::string_view action,
                   std::string_view route) const {
    return covers(resource, action) && (!_has_glob || glob_match(_glob, route));
}

bool Grant::allows(std::string_view resource, std::string_view action,
                   std::string_view route) const {
    bool allowed = false;
    for (const Scope& s : _scopes) {
        if (s.covers(resource, action, route)) {
            if (s.deny()) {
                return false;
            }
            allowed = true;
        }
    }
    return allowed;
}

bool Grant::allows(std::string_view resource, std::string_view action) const {
    bool allowed = false;
    for (const Scope& s : _scopes) {
        if (!s.route_glob() && s.covers(resource, action)) {
            if (s.deny()) {
                return false;
            }
            allowed = true;
        }
    }
    return allowed;
}

bool Grant::allows_some_route(std::string_view resource, std::string_view action) const {
    bool allowed = false;
    for (const Scope& s : _scopes) {
        if (!s.covers(resource, action)) {
            continue;
        }
        if (s.deny()) {
            if (!s.route_glob()) {
                return false;
            }
        } else {
            allowed = true;
        }
    }
    return allowed;
}

bool Grant::holds(const Scope& wanted) const {
    if (wanted.deny()) {
        return true;
    }
    const std::optional<std::string_view> glob = wanted.route_glob();
    const bool literal = glob && glob->find_first_of("*?") == std::string_view::npos;
    // Whether one of this grant's scopes reaches every route the wanted scope reaches.
    auto reaches = [&](const Scope& mine) {
        const std::optional<std::string_view> g = mine.route_glob();
        return !g || *g == "*" || (glob && (*g == *glob || (literal && glob_match(*g, *glob))));
    };
    // Whether a deny of this grant may touch a route the wanted scope reaches.
    auto touches = [&](const Scope& mine) {
        const std::optional<std::string_view> g = mine.route_glob();
        return !g || !glob || !literal || glob_match(*g, *glob);
    };
    for (const Resource& r : resources) {
        if (wanted.resource() != "*" && wanted.resource() != r.name) {
            continue;
        }
        for (std::string_view action : r.actions) {
            if (action.empty() || (wanted.action() != "*" && wanted.action() != action)) {
                continue;
            }
            bool held = false;
            for (const Scope& mine : _scopes) {
                if (!mine.covers(r.name, action)) {
                    continue;
                }
                if (mine.deny() && touches(mine)) {
                    return false;
                }
                held = held || (!mine.deny() && reaches(mine));
            }
            if (!held) {
                return false;
            }
        }
    }
    return true;
}

int http_status(Access a) {
    switch (a) {
    case Access::granted:
        return 200;
    case Access::unauthorized:
        return 401;
    case Access::forbidden:
        return 403;
    case Access::not_found:
        return 404;
    }
    return 500;
}

Access authorize(const Grant* who, std::string_view resource, std::string_view action,
                 std::string_view route) {
    if (who == nullptr) {
        return Access::unauthorized;
    }
    if (!who->allows_some_route(resource, action)) {
        return Access::forbidden;
    }
    return who->allows(resource, action, route) ? Access::granted : Access::not_found;
}

Access authorize(const Grant* who, std::string_view resource, std::string_view action) {
    if (who == nullptr) {
        return Access::unauthorized;
    }
    return who->allows(resource, action) ? Access::granted : Access::forbidden;
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
    constexpr std::string_view scheme = "bearer";
    if (authorization.size() <= scheme.size() ||
        !http::name_equals(authorization.substr(0, scheme.size()), scheme) ||
        authorization[scheme.size()] != ' ') {
        return std::nullopt;
    }
    std::string_view token = authorization.substr(scheme.size());
    token.remove_prefix(std::min(token.find_first_not_of(' '), token.size()));
    // b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    size_t i = 0;
    while (i < token.size()) {
        const char c = token[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/')) {
            break;
        }
        ++i;
    }
    if (i == 0) {
        return std::nullopt;
    }
    while (i < token.size() && token[i] == '=') {
        ++i;
    }
    if (i != token.size()) {
        return std::nullopt;
    }
    return token;
}

std::optional<TokenSet> TokenSet::from_config(const std::vector<config::TokenConfig>& tokens,
                                              std::string* why) {
    TokenSet set;
    for (const config::TokenConfig& t : tokens) {
        std::string reason;
        if (!set.add(t.name, t.sha256, t.scopes, &reason)) {
            fail(why, "token " + t.name + ": " + reason);
            return std::nullopt;
        }
    }
    return set;
}

bool TokenSet::add(std::string name, const TokenDigest& sha256, std::span<const std::string> scopes,
                   std::string* why) {
    return add(std::move(name), sha256, scopes, 0, why);
}

bool TokenSet::add(std::string name, const TokenDigest& sha256, std::span<const std::string> scopes,
                   int64_t expires_at_ns, std::string* why) {
    if (name.empty()) {
        return fail(why, "empty token name");
    }
    for (const Entry& e : _entries) {
        if (e.grant->name() == name) {
            return fail(why, "a token called " + name + " exists already");
        }
        // Digests are not secret (they sit in the configuration); no need for equal_ct here.
        if (e.sha256 == sha256) {
            return fail(why, "same sha256 as token " + e.grant->name());
        }
    }
    if (scopes.empty()) {
        return fail(why, "needs at least one scope");
    }
    std::vector<Scope> parsed;
    parsed.reserve(scopes.size());
    for (const std::string& text : scopes) {
        std::string reason;
        std::optional<Scope> s = Scope::parse(text, &reason);
        if (!s) {
            return fail(why, "scope " + quoted(text) + ": " + reason);
        }
        parsed.push_back(std::move(*s));
    }
    _entries.push_back(
        {sha256, std::make_unique<const Grant>(std::move(name), std::move(parsed)), expires_at_ns});
    return true;
}

bool TokenSet::revoke(std::string_view name) {
    auto it = std::find_if(_entries.begin(), _entries.end(),
                           [&](const Entry& e) { return e.grant->name() == name; });
    if (it == _entries.end()) {
        return false;
    }
    _entries.erase(it);
    return true;
}

const Grant* TokenSet::authenticate(std::string_view authorization, int64_t now_unix_ns) const {
    const std::optional<std::string_view> token = bearer_token(authorization);
    if (!token) {
        return nullptr;
    }
    TokenDigest presented;
    SHA256(reinterpret_cast<const uint8_t*>(token->data()), token->size(), presented.data());
    // Every digest is compared, the match or not: no early exit.
    const Grant* found = nullptr;
    for (const Entry& e : _entries) {
        const bool match = verify::equal_ct(presented, e.sha256);
        const bool live = e.expires_at_ns == 0 || now_unix_ns < e.expires_at_ns;
        found = match && live ? e.grant.get() : found;
    }
    OPENSSL_cleanse(presented.data(), presented.size());
    return found;
}

const Grant* TokenSet::find(std::string_view name) const {
    for (const Entry& e : _entries) {
        if (e.grant->name() == name) {
            return e.grant.get();
        }
    }
    return nullptr;
}

} // namespace portcullis::admin
