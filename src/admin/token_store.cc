#include "portcullis/admin/token_store.hh"

#include "portcullis/admin/state_file.hh"
#include "portcullis/base/encoding.hh"
#include "portcullis/config/config.hh"

#include <openssl/rand.h>
#include <openssl/sha.h>

namespace portcullis::admin {

namespace {

constexpr StateFile token_file{token_state_file_name, "portcullis-tokens 1", "token",
                               max_minted_tokens, 0640};

// "" or why the line "token <name> <sha256> <created> <expires> <scope>..." is wrong.
std::string parse_token_line(std::string_view line, MintedToken& t) {
    const std::vector<std::string_view> f = state_fields(line);
    if (f.size() < 6 || f[0] != "token") {
        return "expected \"token <name> <sha256> <created_at> <expires_at> <scope>...\"";
    }
    if (!config::is_name(f[1])) {
        return "token names are 1 to 64 characters of [a-z0-9_-]";
    }
    t.name = std::string(f[1]);
    if (!parse_state_digest(f[2], t.sha256)) {
        return "expected the token's SHA-256 as 64 hex characters";
    }
    if (!parse_state_time(f[3], t.created_at) || !parse_state_time(f[4], t.expires_at)) {
        return "expected created_at and expires_at as Unix nanoseconds";
    }
    if (f.size() - 5 > max_scopes_per_token) {
        return "more than " + std::to_string(max_scopes_per_token) + " scopes";
    }
    for (size_t i = 5; i < f.size(); ++i) {
        std::string why;
        if (!Scope::parse(f[i], &why)) {
            return "scope \"" + std::string(f[i]) + "\": " + why;
        }
        t.scopes.emplace_back(f[i]);
    }
    return {};
}

} // namespace

std::string parse_token_state(std::string_view text, const std::string& path,
                              std::vector<MintedToken>& out) {
    out.clear();
    std::string err = walk_state(token_file, text, path, [&](std::string_view line) {
        MintedToken t;
        std::string why = parse_token_line(line, t);
        if (!why.empty()) {
            return why;
        }
        for (const MintedToken& seen : out) {
            if (seen.name == t.name) {
                why = "token " + t.name + " listed twice";
            } else if (seen.sha256 == t.sha256) {
                why = "token " + t.name + " has the same sha256 as " + seen.name;
            }
        }
        out.push_back(std::move(t));
        return why;
    });
    if (!err.empty()) {
        out.clear();
    }
    return err;
}

std::string format_token_state(const std::vector<MintedToken>& tokens) {
    std::string records;
    for (const MintedToken& t : tokens) {
        records += "token " + t.name + " " + base::hex(t.sha256) + " " +
                   std::to_string(t.created_at) + " " + std::to_string(t.expires_at);
        for (const std::string& s : t.scopes) {
            records += " " + s;
        }
        records += '\n';
    }
    return seal_state(token_file, records);
}

std::string read_token_state(const std::string& dir, std::vector<MintedToken>& out) {
    out.clear();
    return read_state_file(token_file, dir, [&](std::string_view text, const std::string& path) {
        return parse_token_state(text, path, out);
    });
}

std::string write_token_state(const std::string& dir, const std::vector<MintedToken>& tokens) {
    return write_state_file(token_file, dir, format_token_state(tokens));
}

NewToken generate_token() {
    uint8_t raw[32];
    RAND_bytes(raw, sizeof raw);
    NewToken t;
    t.token = "pct_" + base::base64(raw, base::Base64Alphabet::url);
    SHA256(reinterpret_cast<const uint8_t*>(t.token.data()), t.token.size(), t.sha256.data());
    return t;
}

} // namespace portcullis::admin
