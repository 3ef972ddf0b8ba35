// The schema walk of tokens (the control plane's bearer tokens, by their SHA-256) and integrity
// (files pinned by their SHA-256).
#include "loader_walker.hh"

#include "portcullis/admin/auth.hh"
#include "portcullis/base/encoding.hh"

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

namespace portcullis::config::detail {

namespace {

// The keys a mapping allows come from the key table (portcullis/config/keys.hh).
constexpr auto token_keys = keys_of<key_count("tokens.*")>("tokens.*");

std::string sha256_hex(std::span<const uint8_t> digest) {
    return base::hex(digest);
}

// Streams a regular file through SHA-256.
std::optional<std::string> hash_regular_file(const std::string& path,
                                             std::array<uint8_t, SHA256_DIGEST_LENGTH>& digest) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return std::string(std::strerror(errno));
    }
    struct stat st {};
    std::optional<std::string> failure;
    if (::fstat(fd, &st) != 0) {
        failure = std::strerror(errno);
    } else if (!S_ISREG(st.st_mode)) {
        failure = "not a regular file";
    } else {
        SHA256_CTX ctx;
        SHA256_Init(&ctx);
        std::array<uint8_t, 64 * 1024> buf;
        for (;;) {
            ssize_t n = ::read(fd, buf.data(), buf.size());
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                failure = std::strerror(errno);
                break;
            }
            if (n == 0) {
                break;
            }
            SHA256_Update(&ctx, buf.data(), static_cast<size_t>(n));
        }
        SHA256_Final(digest.data(), &ctx);
    }
    ::close(fd);
    return failure;
}

} // namespace

void Walker::tokens(const YamlNode& map, const std::string& path) {
    std::map<std::array<uint8_t, 32>, std::string> seen;
    for (const YamlNode& member : map.children) {
        std::string p = join_path(path, member.key);
        if (!named_mapping(member, p, "token", "sha256, scopes")) {
            continue;
        }
        check_keys(member, p, token_keys);
        TokenConfig t;
        t.name = member.key;
        t.mark = member.key_mark;
        bool ok = true;
        if (const YamlNode* n = required(member, "sha256", p)) {
            std::string sp = join_path(p, "sha256");
            auto text = string(*n, sp);
            auto decoded =
                text && text->size() == 64 ? base::hex_decode(*text, t.sha256) : std::nullopt;
            if (!decoded) {
                if (text) {
                    error(n->mark, sp,
                          "expected the token's SHA-256 as 64 hex characters (portcullis "
                          "token new prints it), found " +
                              std::to_string(text->size()) + " characters");
                }
                ok = false;
            } else if (auto [it, inserted] = seen.emplace(t.sha256, t.name); !inserted) {
                error(n->mark, sp, "same sha256 as token " + it->second);
                ok = false;
            }
        } else {
            ok = false;
        }
        if (const YamlNode* n = required(member, "scopes", p)) {
            std::string sp = join_path(p, "scopes");
            if (list(*n, sp, "[\"jobs:consume:github\"]") == nullptr) {
                ok = false;
            } else {
                if (n->children.empty()) {
                    error(n->mark, sp, "needs at least one scope");
                    ok = false;
                }
                for (size_t i = 0; i < n->children.size(); ++i) {
                    std::string ip = index_path(sp, i);
                    auto scope = string(n->children[i], ip);
                    std::string why;
                    if (!scope) {
                        ok = false;
                    } else if (!admin::Scope::parse(*scope, &why)) {
                        error(n->children[i].mark, ip,
                              "expected [!]resource:action[:route-glob] (like "
                              "jobs:consume:github or !jobs:read:stripe), found " +
                                  quote(*scope) + ": " + why);
                        ok = false;
                    } else {
                        t.scopes.push_back(*scope);
                    }
                }
            }
        } else {
            ok = false;
        }
        if (ok) {
            _cfg.tokens.push_back(std::move(t));
        }
    }
}

void Walker::integrity(const YamlNode& map, const std::string& path) {
    for (const YamlNode& member : map.children) {
        std::string p = join_path(path, member.key);
        auto pin = string(member, p);
        if (!pin) {
            continue;
        }
        std::array<uint8_t, 32> want{};
        std::string_view hex_part =
            std::string_view(*pin).substr(pin->starts_with("sha256:") ? 7 : 0);
        if (!pin->starts_with("sha256:") || hex_part.size() != 64 ||
            !base::hex_decode(hex_part, want)) {
            error(member.mark, p, "expected \"sha256:<64 hex>\", found " + quote(*pin));
            continue;
        }
        std::filesystem::path file(member.key);
        if (file.is_relative() && !_cfg.directory.empty()) {
            file = std::filesystem::path(_cfg.directory) / file;
        }
        std::array<uint8_t, SHA256_DIGEST_LENGTH> have{};
        std::string want_hex = sha256_hex(want);
        std::string shown = base::escape_text(file.string());
        if (auto failure = hash_regular_file(file.string(), have)) {
            error(member.key_mark, p,
                  "cannot read " + shown + " (" + *failure + ") to check its pinned sha256 " +
                      want_hex.substr(0, 12) + "...");
            continue;
        }
        std::string have_hex = sha256_hex(have);
        if (have != want) {
            error(member.mark, p,
                  shown + " does not match its pin: pinned sha256 " + want_hex.substr(0, 12) +
                      "..., file has " + have_hex.substr(0, 12) + "...");
            continue;
        }
        _cfg.integrity[member.key] = "sha256:" + want_hex;
    }
}

} // namespace portcullis::config::detail
