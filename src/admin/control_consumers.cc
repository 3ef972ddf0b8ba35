#include "control_consumers.hh"

#include "portcullis/admin/request.hh"
#include "portcullis/admin/token_store.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"

#include <openssl/mem.h>

#include <algorithm>
#include <csignal>
#include <unistd.h>

namespace portcullis::admin {

namespace {

using base::Level;
using base::LogLine;

ConsumerAnswer error_answer(uint16_t status, std::string_view code, std::string_view detail,
                            std::string extra = {}) {
    ConsumerAnswer a;
    a.status = status;
    base::StringBuffer buf(a.body);
    base::JsonWriter w(buf);
    w.begin_object().key("error").string(code).key("detail").string(detail).end_object();
    a.extra_headers = std::move(extra);
    return a;
}

// An optional string member: absent (out untouched), a plain string, or bad.
Field string_member(std::string_view body, std::string_view pointer, std::string& out) {
    const base::JsonLookup l = base::json_find(body, pointer);
    if (l.status == base::JsonStatus::not_found) {
        return Field::absent;
    }
    if (l.status == base::JsonStatus::found && l.value.type == base::JsonType::null) {
        return Field::absent;
    }
    std::optional<std::string_view> v = json_plain(body, pointer, base::JsonType::string);
    if (!v) {
        return Field::bad;
    }
    out = std::string(*v);
    return Field::ok;
}

std::string joined(const std::vector<std::string>& list) {
    std::string out;
    for (const std::string& s : list) {
        out += (out.empty() ? "" : ",") + s;
    }
    return out;
}

void write_consumer(base::JsonWriter<base::StringBuffer>& w, const Consumer& c, int healthy) {
    char tmp[24];
    w.key("name").string(c.name).key("routes").begin_array();
    for (const std::string& r : c.routes) {
        w.string(r);
    }
    w.end_array().key("url");
    c.url.empty() ? w.null() : w.string(c.url);
    w.key("health_path");
    c.health_path.empty() ? w.null() : w.string(c.health_path);
    w.key("healthy");
    healthy < 0 ? w.null() : w.boolean(healthy == 1);
    w.key("sink");
    c.url.empty() ? w.null() : w.string(c.sink_name());
    w.key("created_at").string(base::format_rfc3339(c.created_at, tmp));
}

} // namespace

std::string ConsumerRegistry::load(const std::string& spool_dir, TokenSet& tokens) {
    _dir = spool_dir;
    if (std::string err = read_consumer_state(_dir, _consumers); !err.empty()) {
        return "consumers: " + err;
    }
    for (const Consumer& c : _consumers) {
        std::string why;
        if (!tokens.add(c.token_name(), c.token_sha256, c.scopes(), 0, &why)) {
            return "consumers: " + _dir + "/" + std::string(consumer_state_file_name) +
                   ": consumer " + c.name + ": " + why;
        }
    }
    return "";
}

void ConsumerRegistry::add_tokens(TokenSet& tokens) const {
    // A change that waits has its file written already: its list is the one that holds.
    for (const Consumer& c : _pending ? _pending->after : _consumers) {
        std::string why;
        if (!tokens.add(c.token_name(), c.token_sha256, c.scopes(), 0, &why)) {
            LogLine(Level::error, "control plane: consumer token not served after reload")
                .field("consumer", c.name)
                .field("error", why)
                .write();
        }
    }
}

std::optional<ConsumerAnswer> ConsumerRegistry::refusal(const ConsumerContext& cx,
                                                        std::string_view done) const {
    if (cx.desk == nullptr) {
        return error_answer(503, "unavailable",
                            "consumers cannot be " + std::string(done) + " here");
    }
    if (_pending) {
        return error_answer(503, "unavailable",
                            "another consumer change is being applied; try again",
                            "Retry-After: 1\r\n");
    }
    return std::nullopt;
}

ConsumerAnswer ConsumerRegistry::register_consumer(std::string_view body, const Grant& who,
                                                   ConsumerContext& cx) {
    if (auto busy = refusal(cx, "registered")) {
        return *busy;
    }
    const base::JsonLookup whole = base::json_find(body, "");
    if (whole.status != base::JsonStatus::found || whole.value.type != base::JsonType::object) {
        return error_answer(400, "bad_request", "the body must be a JSON object");
    }
    Consumer c;
    if (string_member(body, "/name", c.name) != Field::ok || !config::is_name(c.name) ||
        c.name.size() > config::max_consumer_name) {
        return error_answer(400, "bad_request",
                            "name: 1 to " + std::to_string(config::max_consumer_name) +
                                " characters of [a-z0-9_-]");
    }
    const base::JsonLookup list = base::json_find(body, "/routes");
    std::vector<std::string_view> routes;
    if (list.status != base::JsonStatus::found || list.value.type != base::JsonType::array ||
        !base::json_plain_strings(list.value.raw, routes) || routes.empty() ||
        routes.size() > max_consumer_routes) {
        return error_answer(400, "bad_request",
                            "routes: an array of 1 to " + std::to_string(max_consumer_routes) +
                                " route names");
    }
    for (std::string_view r : routes) {
        c.routes.emplace_back(r);
    }
    if (string_member(body, "/url", c.url) == Field::bad) {
        return error_answer(400, "bad_request", "url: a string");
    }
    if (string_member(body, "/health_path", c.health_path) == Field::bad) {
        return error_answer(400, "bad_request", "health_path: a string");
    }
    if (!c.url.empty()) {
        c.secret = generate_signing_secret();
    }
    if (std::string why = consumer_error(c); !why.empty()) {
        return error_answer(400, "bad_request", why);
    }
    const config::Config& cfg = cx.snap.config();
    const bool clash = std::any_of(_consumers.begin(), _consumers.end(),
                                   [&](const Consumer& o) { return o.name == c.name; }) ||
                       cx.tokens.find(c.name) != nullptr ||
                       cx.tokens.find(c.token_name()) != nullptr ||
                       std::any_of(cfg.sinks.begin(), cfg.sinks.end(),
                                   [&](const config::SinkConfig& s) { return s.name == c.name; });
    if (clash) {
        return error_answer(409, "conflict",
                            "a consumer, token or sink called " + c.name + " exists already");
    }
    for (const std::string& r : c.routes) {
        const bool known = std::any_of(cfg.routes.begin(), cfg.routes.end(),
                                       [&](const config::RouteConfig& rc) { return rc.name == r; });
        if (!known) {
            return error_answer(422, "unknown_route", "route " + r + " is not configured");
        }
    }
    for (const std::string& s : c.scopes()) {
        std::optional<Scope> scope = Scope::parse(s);
        if (!scope || !who.holds(*scope)) {
            return error_answer(403, "forbidden",
                                "scope \"" + s + "\" is not held by token " + who.name() +
                                    ": a consumer cannot be granted more than its registrar has");
        }
    }
    if (_consumers.size() >= max_consumers) {
        return error_answer(409, "conflict",
                            "already " + std::to_string(max_consumers) +
                                " consumers: remove some first");
    }
    NewToken fresh = generate_token();
    c.token_sha256 = fresh.sha256;
    c.created_at = cx.now;
    Pending p;
    p.before = _consumers;
    p.after = _consumers;
    p.after.push_back(c);
    if (std::string err = write_consumer_state(_dir, p.after); !err.empty()) {
        OPENSSL_cleanse(fresh.token.data(), fresh.token.size());
        LogLine(Level::error, "control plane: cannot save consumers").field("error", err).write();
        return error_answer(500, "internal", "the consumer state file could not be written");
    }
    p.changed = std::move(c);
    p.token = std::move(fresh.token);
    p.by = who.name();
    p.ticket = cx.desk->ask(io::ReloadDesk::Errand::consumers);
    _pending = std::move(p);
    // The main thread takes signals; it publishes the configuration with the new list.
    ::kill(::getpid(), SIGUSR1);
    return {};
}

ConsumerAnswer ConsumerRegistry::remove(std::string_view name, const Grant& who,
                                        ConsumerContext& cx) {
    if (auto busy = refusal(cx, "removed")) {
        return *busy;
    }
    auto it = std::find_if(_consumers.begin(), _consumers.end(),
                           [&](const Consumer& c) { return c.name == name; });
    if (it == _consumers.end()) {
        return error_answer(404, "not_found", "no consumer of that name");
    }
    Pending p;
    p.removal = true;
    p.before = _consumers;
    p.changed = *it;
    p.after = _consumers;
    p.after.erase(p.after.begin() + (it - _consumers.begin()));
    if (std::string err = write_consumer_state(_dir, p.after); !err.empty()) {
        LogLine(Level::error, "control plane: cannot save consumers").field("error", err).write();
        return error_answer(500, "internal", "the consumer state file could not be written");
    }
    // Durable: the token goes now (every request authenticates anew, so a connection that used
    // it gets 401 next); the sink goes once the main thread has published the change.
    cx.tokens.revoke(p.changed.token_name());
    p.by = who.name();
    p.ticket = cx.desk->ask(io::ReloadDesk::Errand::consumers);
    _pending = std::move(p);
    ::kill(::getpid(), SIGUSR1);
    return {};
}

std::optional<ConsumerAnswer> ConsumerRegistry::poll(ConsumerContext& cx) {
    if (!_pending) {
        return std::nullopt;
    }
    std::optional<io::ReloadOutcome> o =
        cx.desk->outcome(io::ReloadDesk::Errand::consumers, _pending->ticket);
    if (!o) {
        return std::nullopt;
    }
    ConsumerAnswer a = finish(*o, cx);
    _pending.reset();
    return a;
}

ConsumerAnswer ConsumerRegistry::finish(const io::ReloadOutcome& o, ConsumerContext& cx) {
    Pending& p = *_pending;
    const Consumer& c = p.changed;
    if (!o.ok) {
        const std::string why = o.errors.empty() ? std::string("refused") : o.errors.front();
        if (std::string err = write_consumer_state(_dir, p.before); !err.empty()) {
            LogLine(Level::error, "control plane: cannot restore consumers.state")
                .field("error", err)
                .write();
        }
        if (p.removal) {
            std::string ignored;
            cx.tokens.add(c.token_name(), c.token_sha256, c.scopes(), 0, &ignored);
        }
        OPENSSL_cleanse(p.token.data(), p.token.size());
        LogLine(Level::error, p.removal ? "control plane: consumer removal not taken up"
                                        : "control plane: consumer registration not taken up")
            .field("consumer", c.name)
            .field("error", why)
            .write();
        return error_answer(500, "internal", "the configuration was not published: " + why);
    }
    _consumers = p.after;
    ConsumerAnswer a;
    base::StringBuffer buf(a.body);
    base::JsonWriter w(buf);
    base::Event e = base::Event::make(p.removal ? base::EventType::consumer_removed
                                                : base::EventType::consumer_registered,
                                      cx.now);
    e.set_text(c.name);
    if (p.removal) {
        LogLine(Level::info, "control plane: consumer removed")
            .field("consumer", c.name)
            .field("by", p.by)
            .write();
        w.begin_object().key("removed").string(c.name).end_object();
        a.status = 200;
    } else {
        std::string why;
        if (!cx.tokens.add(c.token_name(), c.token_sha256, c.scopes(), 0, &why) &&
            cx.tokens.find(c.token_name()) == nullptr) {
            LogLine(Level::error, "control plane: consumer token refused")
                .field("error", why)
                .write();
        }
        LogLine(Level::info, "control plane: consumer registered")
            .field("consumer", c.name)
            .field("routes", joined(c.routes))
            .field("sink", !c.url.empty())
            .field("health_probe", !c.health_path.empty())
            .field("by", p.by)
            .write();
        w.begin_object();
        write_consumer(w, c, c.health_path.empty() ? -1 : 1);
        // Shown once: only the token's digest is kept, and the secret never leaves the file.
        w.key("token").string(p.token);
        w.key("secret");
        c.secret.empty() ? w.null() : w.string(c.secret);
        w.end_object();
        OPENSSL_cleanse(p.token.data(), p.token.size());
        a.status = 201;
    }
    cx.publish(e);
    return a;
}

int ConsumerRegistry::healthy(const Consumer& c, const std::vector<deliver::SinkReport>& reports) {
    if (c.health_path.empty()) {
        return -1;
    }
    const std::string sink = c.sink_name();
    for (const deliver::SinkReport& r : reports) {
        if (r.name == sink) {
            return r.healthy;
        }
    }
    return -1;
}

ConsumerAnswer ConsumerRegistry::list(const std::vector<deliver::SinkReport>& reports) const {
    ConsumerAnswer a;
    a.status = 200;
    base::StringBuffer buf(a.body);
    base::JsonWriter w(buf);
    w.begin_object().key("consumers").begin_array();
    for (const Consumer& c : _consumers) {
        w.begin_object();
        write_consumer(w, c, healthy(c, reports));
        w.end_object();
    }
    w.end_array().end_object();
    return a;
}

void ConsumerRegistry::write_health(base::JsonWriter<base::StringBuffer>& w,
                                    const std::vector<deliver::SinkReport>& reports) const {
    w.key("consumers").begin_object();
    for (const Consumer& c : _consumers) {
        const int h = healthy(c, reports);
        w.key(c.name).begin_object().key("healthy");
        h < 0 ? w.null() : w.boolean(h == 1);
        w.key("routes").begin_array();
        for (const std::string& r : c.routes) {
            w.string(r);
        }
        w.end_array().end_object();
    }
    w.end_object();
}

void ConsumerRegistry::write_metrics(Exposition& e,
                                     const std::vector<deliver::SinkReport>& reports) const {
    e.family("portcullis_consumer_healthy", "gauge",
             "1 while a registered consumer's health probe passes (or none has run yet), 0 "
             "while it fails: its sink then waits. Consumers with a health_path only.");
    for (const Consumer& c : _consumers) {
        if (const int h = healthy(c, reports); h >= 0) {
            e.sample("portcullis_consumer_healthy", {{"consumer", c.name}},
                     static_cast<uint64_t>(h));
        }
    }
}

} // namespace portcullis::admin
