#include "portcullis/admin/token_store.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/file.hh"
#include "portcullis/config/config.hh"

#include <algorithm>
#include <cerrno>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <sys/stat.h>

namespace portcullis::admin {

namespace {

constexpr std::string_view version_line = "portcullis-tokens 1";
constexpr std::string_view checksum_prefix = "sha256 ";
// max_minted_tokens lines of at most ~64 scopes each stay well below this.
constexpr size_t max_file_bytes = 4 << 20;

std::string sha256_hex(std::string_view text) {
    TokenDigest d{};
    SHA256(reinterpret_cast<const uint8_t*>(text.data()), text.size(), d.data());
    return base::hex(d);
}

// A decimal int64 >= 0 without sign or leading zero (but "0").
bool parse_time(std::string_view s, int64_t& out) {
    if (s.empty() || s.size() > 19 || (s.size() > 1 && s[0] == '0')) {
        return false;
    }
    int64_t n = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        const int64_t digit = c - '0';
        if (n > (INT64_MAX - digit) / 10) {
            return false;
        }
        n = n * 10 + digit;
    }
    out = n;
    return true;
}

// Splits at single spaces; an empty field (two spaces, a leading or trailing one) is kept empty
// so that the caller refuses it.
std::vector<std::string_view> fields(std::string_view line) {
    std::vector<std::string_view> out;
    while (true) {
        const size_t sp = line.find(' ');
        out.push_back(line.substr(0, sp));
        if (sp == std::string_view::npos) {
            return out;
        }
        line.remove_prefix(sp + 1);
    }
}

// "" or why the line "token <name> <sha256> <created> <expires> <scope>..." is wrong.
std::string parse_token_line(std::string_view line, MintedToken& t) {
    const std::vector<std::string_view> f = fields(line);
    if (f.size() < 6 || f[0] != "token") {
        return "expected \"token <name> <sha256> <created_at> <expires_at> <scope>...\"";
    }
    if (!config::is_name(f[1])) {
        return "token names are 1 to 64 characters of [a-z0-9_-]";
    }
    t.name = std::string(f[1]);
    // Lowercase only, as written: one spelling per digest.
    const bool lower =
        std::all_of(f[2].begin(), f[2].end(), [](char c) { return c < 'A' || c > 'Z'; });
    auto n = f[2].size() == 64 && lower ? base::hex_decode(f[2], t.sha256) : std::nullopt;
    if (!n || *n != t.sha256.size()) {
        return "expected the token's SHA-256 as 64 hex characters";
    }
    if (!parse_time(f[3], t.created_at) || !parse_time(f[4], t.expires_at)) {
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
    const std::string_view whole = text;
    size_t line = 0;
    bool checked = false;
    std::string err;
    while (!text.empty() && err.empty()) {
        ++line;
        const std::string where = path + ":" + std::to_string(line) + ": ";
        const size_t end = text.find('\n');
        if (end == std::string_view::npos) {
            err = where + "no newline at the end of the line (cut short?)";
            break;
        }
        const std::string_view l = text.substr(0, end);
        const size_t at = static_cast<size_t>(l.data() - whole.data());
        text.remove_prefix(end + 1);
        if (checked) {
            err = where + "text after the checksum line";
        } else if (line == 1) {
            if (l != version_line) {
                err = where + "expected \"" + std::string(version_line) +
                      "\" (not a token state file, or one written by a newer portcullis)";
            }
        } else if (l.starts_with(checksum_prefix)) {
            if (l.substr(checksum_prefix.size()) != sha256_hex(whole.substr(0, at))) {
                err = where + "checksum does not match the lines above (the file was damaged "
                              "or edited)";
            }
            checked = true;
        } else if (out.size() >= max_minted_tokens) {
            err = where + "more than " + std::to_string(max_minted_tokens) + " tokens";
        } else {
            MintedToken t;
            if (std::string why = parse_token_line(l, t); !why.empty()) {
                err = where + why;
                break;
            }
            for (const MintedToken& seen : out) {
                if (seen.name == t.name) {
                    err = where + "token " + t.name + " listed twice";
                } else if (seen.sha256 == t.sha256) {
                    err = where + "token " + t.name + " has the same sha256 as " + seen.name;
                }
            }
            out.push_back(std::move(t));
        }
    }
    if (err.empty() && line == 0) {
        err = path + ":1: empty file (cut short?)";
    }
    if (err.empty() && !checked) {
        err = path + ":" + std::to_string(line) + ": no checksum line at the end (cut short?)";
    }
    if (!err.empty()) {
        out.clear();
    }
    return err;
}

std::string format_token_state(const std::vector<MintedToken>& tokens) {
    std::string text(version_line);
    text += '\n';
    for (const MintedToken& t : tokens) {
        text += "token " + t.name + " " + base::hex(t.sha256) + " " + std::to_string(t.created_at) +
                " " + std::to_string(t.expires_at);
        for (const std::string& s : t.scopes) {
            text += " " + s;
        }
        text += '\n';
    }
    text += std::string(checksum_prefix) + sha256_hex(text) + "\n";
    return text;
}

std::string read_token_state(const std::string& dir, std::vector<MintedToken>& out) {
    out.clear();
    const std::string path = dir + "/" + std::string(token_state_file_name);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
        return {};
    }
    std::string text;
    if (auto why = base::read_regular_file(path, max_file_bytes, text)) {
        return "cannot read " + path + ": " + *why;
    }
    return parse_token_state(text, path, out);
}

std::string write_token_state(const std::string& dir, const std::vector<MintedToken>& tokens) {
    const std::string text = format_token_state(tokens);
    return base::replace_file(dir + "/" + std::string(token_state_file_name), [&](int fd) {
        return base::write_all(fd, text.data(), text.size());
    });
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
