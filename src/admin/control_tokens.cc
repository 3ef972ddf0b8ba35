#include "control_tokens.hh"

#include "portcullis/admin/request.hh"
#include "portcullis/base/json.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/base/log.hh"
#include "portcullis/base/time.hh"
#include "portcullis/http/error_bodies.hh"

#include <openssl/mem.h>

#include <algorithm>
#include <optional>
#include <span>

namespace portcullis::admin {

namespace {

using base::Level;
using base::LogLine;

TokenAnswer plain(uint16_t status, std::string body) {
    TokenAnswer a;
    a.status = status;
    a.body = std::move(body);
    return a;
}

TokenAnswer refused(uint16_t status, std::string detail) {
    TokenAnswer a;
    a.status = status;
    a.refused = true;
    base::StringBuffer buf(a.body);
    base::JsonWriter w(buf);
    w.begin_object()
        .key("error")
        .string(status == 403   ? "forbidden"
                : status == 409 ? "conflict"
                                : "bad_request")
        .key("detail")
        .string(detail)
        .end_object();
    a.detail = std::move(detail);
    return a;
}

void write_token(base::JsonWriter<base::StringBuffer>& w, std::string_view name,
                 std::span<const std::string> scopes, const MintedToken* m) {
    w.begin_object().key("name").string(name).key("source").string(m ? "minted" : "config");
    w.key("scopes").begin_array();
    for (const std::string& sc : scopes) {
        w.string(sc);
    }
    w.end_array();
    char tmp[24];
    w.key("created_at");
    if (m != nullptr) {
        w.string(base::format_rfc3339(m->created_at, tmp));
    } else {
        w.null();
    }
    w.key("expires_at");
    if (m != nullptr && m->expires_at != 0) {
        w.string(base::format_rfc3339(m->expires_at, tmp));
    } else {
        w.null();
    }
    w.end_object();
}

// The state file holds the change already: told at once.
void publish_token_event(TokenContext& cx, base::EventType type, std::string_view name) {
    base::Event e = base::Event::make(type, cx.now);
    e.set_text(name);
    cx.publish(e);
}

TokenAnswer state_not_written(const std::string& err) {
    LogLine(Level::error, "control plane: cannot save minted tokens").field("error", err).write();
    return plain(500,
                 R"({"error":"internal","detail":"the token state file could not be written"})");
}

} // namespace

std::string MintedTokens::load(const std::string& spool_dir, TokenSet& tokens) {
    if (std::string err = read_token_state(spool_dir, _minted); !err.empty()) {
        return "tokens: " + err;
    }
    for (const MintedToken& t : _minted) {
        std::string why;
        if (!tokens.add(t.name, t.sha256, t.scopes, t.expires_at, &why)) {
            std::string err = "tokens: " + spool_dir;
            err += "/";
            err += token_state_file_name;
            err += ": minted token ";
            err += t.name;
            err += ": ";
            err += why;
            err += " (a token of the configuration clashes with it: rename one, or revoke the "
                   "minted one with DELETE /v1/tokens/";
            err += t.name;
            err += " after removing the other)";
            return err;
        }
    }
    return "";
}

void MintedTokens::add_tokens(TokenSet& tokens) const {
    for (const MintedToken& t : _minted) {
        std::string why;
        if (!tokens.add(t.name, t.sha256, t.scopes, t.expires_at, &why)) {
            LogLine(Level::error, "control plane: minted token not served after reload")
                .field("name", t.name)
                .field("error", why)
                .write();
        }
    }
}

TokenAnswer MintedTokens::list(const config::Snapshot& snap) const {
    TokenAnswer a;
    base::StringBuffer buf(a.body);
    base::JsonWriter w(buf);
    w.begin_object().key("tokens").begin_array();
    for (const config::TokenConfig& t : snap.config().tokens) {
        write_token(w, t.name, t.scopes, nullptr);
    }
    for (const MintedToken& t : _minted) {
        write_token(w, t.name, t.scopes, &t);
    }
    w.end_array().end_object();
    return a;
}

TokenAnswer MintedTokens::mint(std::string_view body, const Grant& who, TokenContext& cx) {
    auto name = json_plain(body, "/name", base::JsonType::string);
    if (!name || !config::is_name(*name)) {
        return plain(
            400, R"({"error":"bad_request","detail":"name: 1 to 64 characters of [a-z0-9_-]"})");
    }
    base::JsonLookup list = base::json_find(body, "/scopes");
    std::vector<std::string_view> texts;
    if (list.status != base::JsonStatus::found || list.value.type != base::JsonType::array ||
        !base::json_plain_strings(list.value.raw, texts) || texts.empty() ||
        texts.size() > max_scopes_per_token) {
        return plain(400,
                     R"({"error":"bad_request","detail":"scopes: an array of 1 to 64 scopes"})");
    }
    int64_t expires_in = 0;
    if (duration_field(body, "/expires_in", base::ns_per_s, 100LL * 365 * 86400 * base::ns_per_s,
                       expires_in) == Field::bad) {
        return plain(400, R"({"error":"bad_request","detail":"expires_in: 1s to 100 years"})");
    }
    std::vector<std::string> scopes;
    for (std::string_view text : texts) {
        std::string why;
        std::optional<Scope> scope = Scope::parse(text, &why);
        if (!scope) {
            return refused(400, "scope \"" + std::string(text) + "\": " + why);
        }
        if (!who.holds(*scope)) {
            return refused(403, "scope \"" + std::string(text) + "\" is not held by token " +
                                    who.name() + ": a token cannot grant more than its minter has");
        }
        scopes.emplace_back(text);
    }
    if (cx.tokens.find(*name) != nullptr) {
        return refused(409, "a token called " + std::string(*name) + " exists already");
    }
    if (_minted.size() >= max_minted_tokens) {
        return refused(409, "already " + std::to_string(max_minted_tokens) +
                                " minted tokens: revoke some first");
    }
    NewToken fresh = generate_token();
    MintedToken m{std::string(*name), fresh.sha256, std::move(scopes), cx.now,
                  expires_in == 0 ? 0 : cx.now + expires_in};
    std::vector<MintedToken> next = _minted;
    next.push_back(m);
    if (std::string err = write_token_state(cx.snap.config().spool.dir, next); !err.empty()) {
        return state_not_written(err);
    }
    std::string why;
    if (!cx.tokens.add(m.name, m.sha256, m.scopes, m.expires_at, &why)) {
        // Checked above (name) or practically impossible (a 256-bit digest twice).
        LogLine(Level::error, "control plane: minted token refused").field("error", why).write();
    }
    _minted = std::move(next);
    LogLine(Level::info, "control plane: token minted")
        .field("name", m.name)
        .field("by", who.name())
        .write();
    publish_token_event(cx, base::EventType::config_token_minted, m.name);
    TokenAnswer a;
    a.status = 201;
    base::StringBuffer buf(a.body);
    base::JsonWriter w(buf);
    w.begin_object().key("token").string(fresh.token).key("minted");
    write_token(w, m.name, m.scopes, &m);
    w.end_object();
    OPENSSL_cleanse(fresh.token.data(), fresh.token.size());
    return a;
}

TokenAnswer MintedTokens::revoke(std::string_view name, const Grant& who, TokenContext& cx) {
    auto it = std::find_if(_minted.begin(), _minted.end(),
                           [&](const MintedToken& t) { return t.name == name; });
    if (it == _minted.end()) {
        if (config::is_name(name) && cx.tokens.find(name) != nullptr) {
            return refused(409, "token " + std::string(name) +
                                    " is in the configuration: remove it there and reload");
        }
        return plain(404, std::string(http::error_body::not_found));
    }
    std::vector<MintedToken> next = _minted;
    next.erase(next.begin() + (it - _minted.begin()));
    if (std::string err = write_token_state(cx.snap.config().spool.dir, next); !err.empty()) {
        return state_not_written(err);
    }
    // Every request authenticates anew, so a connection that used the token gets 401 next.
    const std::string revoked(name);
    // A copy, not a reference: who may be the token revoked, and its Grant goes with it.
    // NOLINTNEXTLINE(performance-unnecessary-copy-initialization)
    const std::string by = who.name();
    cx.tokens.revoke(revoked);
    _minted = std::move(next);
    LogLine(Level::info, "control plane: token revoked")
        .field("name", revoked)
        .field("by", by)
        .write();
    publish_token_event(cx, base::EventType::config_token_revoked, revoked);
    TokenAnswer a;
    base::StringBuffer buf(a.body);
    base::JsonWriter w(buf);
    w.begin_object().key("revoked").string(revoked).end_object();
    return a;
}

} // namespace portcullis::admin
