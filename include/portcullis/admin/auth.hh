// Control-plane authentication and authorization (SPEC section 5): bearer tokens, known only by
// their SHA-256, and the scopes each one grants.
//
//   TokenSet tokens = *TokenSet::from_config(cfg.tokens, &why);
//   const Grant* who = tokens.authenticate(authorization_header_value); // nullptr: no token
//   if (Access a = authorize(who, "jobs", "consume", route); a != Access::granted) {
//       return reply(http_status(a)); // 401, 403 or 404
//   }
//
// Scopes are `[!]resource:action[:route-glob]`:
// - resource and action are names from one table (jobs: consume, read, replay, enqueue;
//   metrics: read; events: read; admin: tokens, reload) or `*`. An unknown name is refused when
//   the configuration is loaded rather than never matching, because a misspelt deny would
//   otherwise deny nothing.
// - the route glob matches route names with `*` (any run, empty included) and `?` (one
//   character); without one, the scope covers every route. Only jobs are per route, so a glob
//   is refused on the other resources (and on `*:tokens:x`, which could only name admin).
// - a leading `!` makes the scope a deny. A request is allowed when some allow scope covers it
//   and no deny scope does, in whatever order they are listed.
//
// Route-less permissions (metrics:read, events:read, admin:*; or a per-route permission asked
// for as a whole) are covered only by scopes without a route glob, allows and denies alike: a
// scope narrowed to some routes says nothing about what is not per route, so `*:*:github`
// grants no metrics, and `!*:*:github` takes none away.
//
// Answers (SPEC section 5): no token or an unknown one is 401; a token with no scope for the
// permission on any route is 403; one that has it for some routes but not for the job's or the
// request's route is 404, the same answer as for a job that does not exist, so that a token
// learns nothing about routes and jobs outside its scopes.
#pragma once

#include "portcullis/config/config.hh"

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portcullis::admin {

// `*` matches any run of characters (the empty one too), `?` exactly one; every other character
// itself. Iterative: time is at most glob.size() * text.size() steps, nothing recurses.
bool glob_match(std::string_view glob, std::string_view text);

class Scope {
public:
    // Parses "[!]resource:action[:route-glob]". On error returns nullopt and, when why is not
    // null, sets it to what is wrong ("unknown resource \"job\" (jobs, metrics, events, admin
    // or *)"). The config loader validates scopes with this, so what loads also parses here.
    static std::optional<Scope> parse(std::string_view text, std::string* why = nullptr);

    std::string_view resource() const { return _resource; } // "*" or a name
    std::string_view action() const { return _action; }     // "*" or a name
    // nullopt: every route.
    std::optional<std::string_view> route_glob() const {
        return _has_glob ? std::optional<std::string_view>(_glob) : std::nullopt;
    }
    bool deny() const { return _deny; }

    // Whether the scope names this permission, wildcards included; the route is not looked at.
    bool covers(std::string_view resource, std::string_view action) const;
    // ... and this route: the glob matches it, or there is no glob.
    bool covers(std::string_view resource, std::string_view action, std::string_view route) const;

private:
    std::string _resource;
    std::string _action;
    std::string _glob;
    bool _has_glob = false;
    bool _deny = false;
};

// One token's name and scopes.
class Grant {
public:
    Grant(std::string name, std::vector<Scope> scopes)
        : _name(std::move(name)), _scopes(std::move(scopes)) {}

    const std::string& name() const { return _name; }
    std::span<const Scope> scopes() const { return _scopes; }

    // The permission on one route: some allow covers (resource, action, route) and no deny does.
    bool allows(std::string_view resource, std::string_view action, std::string_view route) const;
    // A route-less permission (metrics:read, admin:tokens): some allow without a route glob
    // covers (resource, action) and no deny without a route glob does.
    bool allows(std::string_view resource, std::string_view action) const;
    // For listings without a route (dead letters without ?route=), which then keep only the
    // items of routes that allows(resource, action, route) accepts: some allow covers
    // (resource, action), on whatever routes, and no deny without a route glob does. It can say
    // yes when the denies happen to cover every allowed route; the filter then leaves an empty
    // list, which is a true answer too.
    bool allows_some_route(std::string_view resource, std::string_view action) const;
    // Whether this grant holds everything an allow scope would grant, so that it may mint a
    // token with it (POST /v1/tokens refuses the rest as privilege escalation). Conservative:
    // for every permission the scope names (its wildcards expanded over the table), some allow
    // of this grant must cover the scope's routes (no glob, "*", the same glob, or, for a
    // literal route, a glob that matches it) and no deny of this grant may take any of them
    // away. A deny scope always holds: it only narrows the token it is in.
    bool holds(const Scope& scope) const;

private:
    std::string _name;
    std::vector<Scope> _scopes;
};

enum class Access : uint8_t {
    granted,
    unauthorized, // 401: no token, or one that is not known
    forbidden,    // 403: the token lacks the permission everywhere
    not_found,    // 404: the token has it, but not for this route
};

// 200 for granted, else the status of the comment above.
int http_status(Access a);

// A per-route permission; who is authenticate's answer (nullptr: 401).
Access authorize(const Grant* who, std::string_view resource, std::string_view action,
                 std::string_view route);
// A route-less permission: granted, unauthorized or forbidden.
Access authorize(const Grant* who, std::string_view resource, std::string_view action);

// The token of an Authorization header value "Bearer <token>": the scheme in any case, one
// space or more, then an RFC 6750 b64token (letters, digits, - . _ ~ + /, then '=' padding).
// nullopt for any other scheme, an empty token or a byte outside that set.
std::optional<std::string_view> bearer_token(std::string_view authorization);

using TokenDigest = std::array<uint8_t, 32>;

// The known tokens, by SHA-256 only: the plaintext is hashed on arrival and never kept. Built
// from the configuration at start-up and on reload; tokens minted through the API (POST
// /v1/tokens) are added and revoked at run time. Not synchronized: one thread (the admin
// listener's) owns a set.
class TokenSet {
public:
    TokenSet() = default;

    // Every configured token; nullopt and why if add refuses one (the loader checks the same
    // things, so that means a caller bypassed it).
    static std::optional<TokenSet> from_config(const std::vector<config::TokenConfig>& tokens,
                                               std::string* why = nullptr);

    // Adds a token known by its SHA-256. Refused (false, and why) when the name is empty or
    // taken, the digest belongs to another token, there is no scope, or a scope does not parse.
    bool add(std::string name, const TokenDigest& sha256, std::span<const std::string> scopes,
             std::string* why = nullptr);
    // The same for a minted token that stops authenticating at expires_at_ns (Unix nanoseconds;
    // 0: never).
    bool add(std::string name, const TokenDigest& sha256, std::span<const std::string> scopes,
             int64_t expires_at_ns, std::string* why = nullptr);
    // Removes the token called name at once; false if there is none. Its Grant is destroyed.
    bool revoke(std::string_view name);

    // The grant of the token in an Authorization header value, or nullptr (401), also when the
    // token has expired by now_unix_ns (the caller's clock, read once per loop). The token's
    // SHA-256 is compared with every stored digest in constant time, all of them whatever
    // matches, so the time taken says nothing about which digest is near. The pointer stays
    // valid until that token is revoked or the set is destroyed; adding others does not move it.
    const Grant* authenticate(std::string_view authorization, int64_t now_unix_ns) const;

    const Grant* find(std::string_view name) const;
    size_t size() const { return _entries.size(); }

private:
    struct Entry {
        TokenDigest sha256;
        std::unique_ptr<const Grant> grant;
        int64_t expires_at_ns = 0; // 0: never
    };
    std::vector<Entry> _entries;
};

} // namespace portcullis::admin
