// The loader's schema walk, shared by the files that hold it (one per group of sections):
// Walker reads a merged YAML tree into a Config and collects what is wrong with it.
//
//   loader_walker.cc   diagnostics and the generic shapes (keys, integers, durations, sizes,
//                      choices, lists, CIDRs, listen addresses, paths, secrets)
//   loader_server.cc   server (with tls), admin, spool
//   loader_routes.cc   routes (path, methods, dedup, ordering, rate_limit, deliver, ...)
//   loader_verify.cc   a route's verify, and the shape of each scheme's secrets
//   loader_sinks.cc    sinks
//   loader_tokens.cc   tokens, integrity
//   loader.cc          the walk's order, defaults, the checks across sections; files, merging,
//                      load() and load_text()
//
// The walk reports every problem it can find in one pass: a bad value is reported and skipped,
// and the rest of its section is still checked.
#pragma once

#include "portcullis/config/config.hh"
#include "portcullis/config/keys.hh"

#include "routes.hh"
#include "text.hh"
#include "yaml_tree.hh"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portcullis::config::detail {

inline constexpr size_t max_secrets_per_route = 8;
inline constexpr int64_t ns_per_ms = 1'000'000;

template <typename E>
struct Choice {
    std::string_view name;
    E value;
};

inline constexpr Choice<Durability> durabilities[] = {
    {"fsync", Durability::fsync}, {"batch", Durability::batch}, {"none", Durability::none}};
inline constexpr Choice<bool> booleans[] = {{"true", true}, {"false", false}};

bool contains(std::span<const std::string_view> list, std::string_view s);
std::string join_names(std::span<const std::string_view> names); // "a, b, c"

template <typename E, size_t N>
std::string choice_names(const Choice<E> (&choices)[N]) {
    std::string out;
    for (size_t i = 0; i < N; ++i) {
        out += i == 0 ? "" : i + 1 == N ? " or " : ", ";
        out += choices[i].name;
    }
    return out;
}

std::string describe(const YamlNode& n); // for "found ...": "a mapping", "a list", a quoted value

// Where a missing key would have gone: the key of the mapping that lacks it.
const SourceMark& owner_mark(const YamlNode& n);

// A secret that holds nothing, and why, kept until the whole route is seen: the warning says
// whether the route still has a usable secret.
struct EmptySecret {
    SourceMark mark;
    std::string path;
    std::string what;  // "env GITHUB_WEBHOOK_SECRET is not set"
    std::string until; // "it is"
};

class Walker {
public:
    Walker(std::vector<Diagnostic>& errors, std::vector<Diagnostic>& warnings, Config& cfg)
        : _errors(errors), _warnings(warnings), _cfg(cfg) {}

    void walk(const YamlNode& root); // loader.cc

private:
    // ---- diagnostics, generic shapes (loader_walker.cc) -----------------------------------------

    void error(const SourceMark& mark, const std::string& path, std::string message);
    void warn(const SourceMark& mark, const std::string& path, std::string message,
              bool secret_unset = false);
    void check_keys(const YamlNode& map, const std::string& path,
                    std::span<const std::string_view> allowed);
    // A mapping-valued member; nullptr when absent, null (`key:` alone) or not a mapping
    // (reported).
    const YamlNode* section(const YamlNode& map, std::string_view key, const std::string& path);
    // A list-valued member; nullptr when absent or not a list (reported).
    const YamlNode* list(const YamlNode& n, const std::string& path, std::string_view example);
    const YamlNode* required(const YamlNode& map, std::string_view key, const std::string& path);
    std::optional<std::string> string(const YamlNode& n, const std::string& path);
    std::optional<std::string> nonempty_string(const YamlNode& n, const std::string& path);
    std::optional<uint64_t> integer(const YamlNode& n, const std::string& path, uint64_t min,
                                    uint64_t max);
    std::optional<int64_t> duration(const YamlNode& n, const std::string& path, int64_t min_ns);
    std::optional<uint64_t> size(const YamlNode& n, const std::string& path, uint64_t min,
                                 uint64_t max);
    std::optional<Rate> rate(const YamlNode& n, const std::string& path);
    template <typename E, size_t N>
    std::optional<E> choice(const YamlNode& n, const std::string& path,
                            const Choice<E> (&choices)[N]);
    std::optional<std::string> header_name(const YamlNode& n, const std::string& path);
    std::vector<Cidr> cidrs(const YamlNode& n, const std::string& path);
    std::optional<ListenAddress> listen_address(const YamlNode& n, const std::string& path);
    // A path of the configuration that names a file next to it: relative paths are taken from
    // the configuration's directory, so that `check` and `serve` read the same files whatever
    // the working directory.
    std::string resolve_path(const std::string& path) const;
    // A member of `routes`, `sinks` or `tokens`: its key must be a name and its value a mapping.
    bool named_mapping(const YamlNode& member, const std::string& p, std::string_view what,
                       std::string_view keys);

    // ---- secrets (loader_walker.cc; secrets below) ----------------------------------------------

    // A list of secrets (a route's, a sink's signing keys), each checked by shape once it holds
    // something. An empty one is a warning that says what it means: skipped while others are
    // usable, else all_unset followed by what would make it usable.
    template <typename Shape>
    bool secrets(const YamlNode& n, const std::string& p, std::string_view owner,
                 std::vector<Secret>& out, Shape shape, const std::string& all_unset);
    // One {env: NAME}, {file: PATH} or {value: "..."}. Returns the secret, its material empty
    // when the variable is unset or the file unreadable (then unset says so, for a warning that
    // the caller words), or nullopt when the item is malformed (reported).
    std::optional<Secret> secret(const YamlNode& n, const std::string& p,
                                 std::optional<EmptySecret>& unset);
    static void strip_one_newline(std::string& s);

    // ---- server, admin, spool (loader_server.cc) ------------------------------------------------

    void server(const YamlNode& map, const std::string& path);
    bool tls(const YamlNode& map, const std::string& path);
    void tls_certificates(const YamlNode& n, const std::string& path,
                          std::vector<TlsCertificate>& out);
    static const ListenAddress* overlapping(const std::vector<ListenAddress>& list,
                                            const ListenAddress& addr);
    void admin(const YamlNode& map, const std::string& path);
    void admin_events(const YamlNode& map, const std::string& path);
    void admin_consumers(const YamlNode& map, const std::string& path);
    void spool(const YamlNode& map, const std::string& path);

    // ---- routes (loader_routes.cc) --------------------------------------------------------------

    std::optional<RoutePath> route_path(const YamlNode& n, const std::string& p);
    std::optional<FieldRef> field_ref(const YamlNode& n, const std::string& path,
                                      const std::optional<RoutePath>& route_shape,
                                      const std::string& route_path_text);
    void routes(const YamlNode& map, const std::string& path);
    void check_path_clashes(const RoutePath& shape, const RouteConfig& r, const SourceMark& mark,
                            const std::string& p);
    void route(const YamlNode& map, const std::string& p, RouteConfig& r,
               std::optional<RoutePath>& shape);
    void deliver(const YamlNode& n, const std::string& p, RouteConfig& r);
    void keep_headers(const YamlNode& n, const std::string& p, RouteConfig& r);
    void methods(const YamlNode& n, const std::string& p, RouteConfig& r);

    // ---- verify (loader_verify.cc) --------------------------------------------------------------

    bool verify(const YamlNode& map, const std::string& p, RouteConfig& r);
    bool hmac_options(const YamlNode& map, const std::string& p, VerifyConfig& v);
    static std::string template_error(std::string_view t, bool with_timestamp);
    bool secret_list(const YamlNode& n, const std::string& p, RouteConfig& r);
    bool check_secret_shape(const Secret& s, Scheme scheme, const SourceMark& mark,
                            const std::string& p);

    // ---- sinks (loader_sinks.cc) ----------------------------------------------------------------

    void sinks(const YamlNode& map, const std::string& path);
    template <typename Check>
    std::optional<std::string> checked(const YamlNode& n, const std::string& path, Check check);
    template <typename Out>
    bool sink_url(const YamlNode& map, const std::string& p, Out& out,
                  bool (*parse)(std::string_view, Out&, std::string&));
    std::optional<std::string> sink_ca(const YamlNode& map, const std::string& p, bool plain,
                                       std::string_view scheme);
    void http_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                   HttpSinkConfig& h);
    void sink_headers(const YamlNode& map, const std::string& p, bool signing,
                      std::vector<SinkHeader>& out);
    bool check_signing_secret(const Secret& s, const SourceMark& mark, const std::string& p);
    void exec_sink(const YamlNode& map, const std::string& p, ExecSinkConfig& e);
    void breaker(const YamlNode& map, const std::string& p, BreakerConfig& b);
    void command_argument(const YamlNode& n, const std::string& p, bool program,
                          std::vector<std::string>& out);
    void nats_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                   NatsSinkConfig& c);
    void redis_sink(const YamlNode& map, const std::string& p, const std::string& sink,
                    RedisSinkConfig& c);
    std::optional<Secret> credential(const YamlNode& n, const std::string& p,
                                     const std::string& sink);

    // ---- tokens, integrity (loader_tokens.cc) ---------------------------------------------------

    void tokens(const YamlNode& map, const std::string& path);
    void integrity(const YamlNode& map, const std::string& path);

    // ---- defaults, checks across sections (loader.cc) -------------------------------------------

    void apply_defaults();
    void check_admin_clash();
    void check_undelivered_sinks();

    std::vector<Diagnostic>& _errors;
    std::vector<Diagnostic>& _warnings;
    Config& _cfg;
    const YamlNode* _admin_listen_node = nullptr;
    bool _listen_given = false;
    std::vector<SourceMark> _listen_marks;              // parallel to _cfg.server.listen
    const YamlNode* _empty_listen_node = nullptr;       // `server.listen: []`
    std::vector<SourceMark> _tls_listen_marks;          // parallel to _cfg.server.tls->listen
    std::vector<std::optional<RoutePath>> _route_paths; // parallel to _cfg.routes
    std::vector<SourceMark> _route_path_marks;          // parallel to _cfg.routes
    std::vector<std::string> _sink_names; // every well-named sink, valid or not: deliver's names
};

template <typename E, size_t N>
std::optional<E> Walker::choice(const YamlNode& n, const std::string& path,
                                const Choice<E> (&choices)[N]) {
    if (n.is_scalar() && !n.is_null()) {
        for (const Choice<E>& c : choices) {
            if (n.value == c.name) {
                return c.value;
            }
        }
    }
    error(n.mark, path, "expected " + choice_names(choices) + ", found " + describe(n));
    return std::nullopt;
}

template <typename Shape>
bool Walker::secrets(const YamlNode& n, const std::string& p, std::string_view owner,
                     std::vector<Secret>& out, Shape shape, const std::string& all_unset) {
    if (list(n, p, "[{env: NAME}]") == nullptr) {
        return false;
    }
    if (n.children.empty()) {
        error(n.mark, p, "needs at least one secret");
        return false;
    }
    if (n.children.size() > max_secrets_per_route) {
        error(n.children[max_secrets_per_route].mark, p,
              "at most " + std::to_string(max_secrets_per_route) + " secrets per " +
                  std::string(owner) + " (rotation needs two or three)");
        return false;
    }
    bool ok = true;
    std::vector<EmptySecret> empty;
    size_t read = 0;
    for (size_t i = 0; i < n.children.size(); ++i) {
        std::optional<EmptySecret> unset;
        auto s = secret(n.children[i], index_path(p, i), unset);
        if (!s) {
            ok = false;
            continue;
        }
        if (unset) {
            empty.push_back(std::move(*unset));
        } else {
            const YamlNode& source = n.children[i].children[0];
            ok = shape(*s, source.mark, join_path(index_path(p, i), source.key)) && ok;
        }
        out.push_back(std::move(*s));
        ++read;
    }
    bool none_usable = empty.size() == read;
    for (EmptySecret& e : empty) {
        std::string consequence =
            none_usable ? all_unset + e.until : "this secret is skipped until " + e.until;
        warn(e.mark, e.path, e.what + ": " + consequence, true);
    }
    return ok;
}

} // namespace portcullis::config::detail
