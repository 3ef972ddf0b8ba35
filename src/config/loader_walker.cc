// The schema walk's diagnostics and generic shapes: what every section reads its values with.
#include "loader_walker.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/file.hh"
#include "portcullis/config/units.hh"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <limits>

namespace portcullis::config::detail {

namespace {

constexpr size_t max_secret_file_bytes = 64u << 10;
// The keys a mapping allows come from the key table (portcullis/config/keys.hh).
constexpr auto secret_keys = keys_of<key_count("<secret>")>("<secret>");

} // namespace

bool contains(std::span<const std::string_view> list, std::string_view s) {
    return std::find(list.begin(), list.end(), s) != list.end();
}

std::string join_names(std::span<const std::string_view> names) {
    std::string out;
    for (std::string_view n : names) {
        if (!out.empty()) {
            out += ", ";
        }
        out += n;
    }
    return out;
}

std::string describe(const YamlNode& n) {
    if (n.is_mapping()) {
        return "a mapping";
    }
    if (n.is_sequence()) {
        return "a list";
    }
    if (n.is_null()) {
        return "nothing";
    }
    return quote(n.value);
}

const SourceMark& owner_mark(const YamlNode& n) {
    return n.key_mark.line > 0 ? n.key_mark : n.mark;
}

void Walker::error(const SourceMark& mark, const std::string& path, std::string message) {
    _errors.push_back(Diagnostic{mark, path, std::move(message)});
}

void Walker::warn(const SourceMark& mark, const std::string& path, std::string message,
                  bool secret_unset) {
    _warnings.push_back(Diagnostic{mark, path, std::move(message), secret_unset});
}

void Walker::check_keys(const YamlNode& map, const std::string& path,
                        std::span<const std::string_view> allowed) {
    for (const YamlNode& member : map.children) {
        if (contains(allowed, member.key)) {
            continue;
        }
        std::string message = "unknown key";
        std::string_view closest;
        size_t best = std::numeric_limits<size_t>::max();
        for (std::string_view candidate : allowed) {
            size_t d = detail::edit_distance(member.key, candidate);
            if (d < best) {
                best = d;
                closest = candidate;
            }
        }
        // Close means a typo, not a different word: one edit for short keys, two for longer.
        size_t close = closest.size() <= 4 ? 1 : 2;
        if (best <= close) {
            message += " (did you mean \"" + std::string(closest) + "\"?)";
        }
        message += "; allowed here: " + join_names(allowed);
        error(member.key_mark, join_path(path, member.key), std::move(message));
    }
}

const YamlNode* Walker::section(const YamlNode& map, std::string_view key,
                                const std::string& path) {
    const YamlNode* n = map.find(key);
    if (n == nullptr || n->is_null()) {
        return nullptr;
    }
    if (!n->is_mapping()) {
        error(n->mark, join_path(path, key), "expected a mapping, found " + describe(*n));
        return nullptr;
    }
    return n;
}

const YamlNode* Walker::list(const YamlNode& n, const std::string& path, std::string_view example) {
    if (!n.is_sequence()) {
        error(n.mark, path,
              "expected a list like " + std::string(example) + ", found " + describe(n));
        return nullptr;
    }
    return &n;
}

const YamlNode* Walker::required(const YamlNode& map, std::string_view key,
                                 const std::string& path) {
    const YamlNode* n = map.find(key);
    if (n == nullptr) {
        error(owner_mark(map), path, "\"" + std::string(key) + "\" is required");
    }
    return n;
}

std::optional<std::string> Walker::string(const YamlNode& n, const std::string& path) {
    if (!n.is_scalar() || n.is_null()) {
        error(n.mark, path, "expected a string, found " + describe(n));
        return std::nullopt;
    }
    return n.value;
}

std::optional<std::string> Walker::nonempty_string(const YamlNode& n, const std::string& path) {
    auto s = string(n, path);
    if (s && s->empty()) {
        error(n.mark, path, "must not be empty");
        return std::nullopt;
    }
    return s;
}

std::optional<uint64_t> Walker::integer(const YamlNode& n, const std::string& path, uint64_t min,
                                        uint64_t max) {
    std::string range = "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
    if (!n.is_scalar() || n.is_null()) {
        error(n.mark, path, "expected " + range + ", found " + describe(n));
        return std::nullopt;
    }
    uint64_t value = 0;
    bool ok = !n.value.empty() && n.value.size() <= 20;
    for (char c : n.value) {
        if (!ok || c < '0' || c > '9' || value > (max - static_cast<uint64_t>(c - '0')) / 10) {
            ok = false;
            break;
        }
        value = value * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!ok || value < min) {
        error(n.mark, path, "expected " + range + ", found " + describe(n));
        return std::nullopt;
    }
    return value;
}

std::optional<int64_t> Walker::duration(const YamlNode& n, const std::string& path,
                                        int64_t min_ns) {
    if (!n.is_scalar() || n.is_null()) {
        error(n.mark, path, "expected a duration like 10s, found " + describe(n));
        return std::nullopt;
    }
    auto ns = parse_duration_ns(n.value);
    if (!ns) {
        error(n.mark, path, duration_error(n.value));
        return std::nullopt;
    }
    if (*ns < min_ns) {
        error(n.mark, path,
              "must be at least " + format_duration(min_ns) + ", found " + quote(n.value));
        return std::nullopt;
    }
    return ns;
}

std::optional<uint64_t> Walker::size(const YamlNode& n, const std::string& path, uint64_t min,
                                     uint64_t max) {
    if (!n.is_scalar() || n.is_null()) {
        error(n.mark, path, "expected a size like 16KiB, found " + describe(n));
        return std::nullopt;
    }
    auto bytes = parse_size(n.value);
    if (!bytes) {
        error(n.mark, path, size_error(n.value));
        return std::nullopt;
    }
    if (*bytes < min || *bytes > max) {
        error(n.mark, path,
              "must be from " + format_size(min) + " to " + format_size(max) + ", found " +
                  quote(n.value));
        return std::nullopt;
    }
    return bytes;
}

std::optional<Rate> Walker::rate(const YamlNode& n, const std::string& path) {
    if (!n.is_scalar() || n.is_null()) {
        error(n.mark, path, "expected a rate like 20/s, found " + describe(n));
        return std::nullopt;
    }
    auto r = parse_rate(n.value);
    if (!r) {
        error(n.mark, path, rate_error(n.value));
    }
    return r;
}

std::optional<std::string> Walker::header_name(const YamlNode& n, const std::string& path) {
    auto s = string(n, path);
    if (!s) {
        return std::nullopt;
    }
    if (!is_token(*s)) {
        error(n.mark, path, "expected a header name (token characters), found " + quote(*s));
        return std::nullopt;
    }
    return detail::ascii_lowercase(*s);
}

std::vector<Cidr> Walker::cidrs(const YamlNode& n, const std::string& path) {
    std::vector<Cidr> out;
    if (list(n, path, "[\"10.0.0.0/8\", \"2001:db8::/32\"]") == nullptr) {
        return out;
    }
    for (size_t i = 0; i < n.children.size(); ++i) {
        const YamlNode& item = n.children[i];
        std::string item_path = index_path(path, i);
        auto text = string(item, item_path);
        if (!text) {
            continue;
        }
        std::string why;
        if (auto cidr = parse_cidr(*text, &why)) {
            out.push_back(std::move(*cidr));
        } else {
            error(item.mark, item_path, why);
        }
    }
    return out;
}

std::optional<ListenAddress> Walker::listen_address(const YamlNode& n, const std::string& path) {
    auto text = string(n, path);
    if (!text) {
        return std::nullopt;
    }
    std::string why;
    auto addr = parse_listen_address(*text, &why);
    if (!addr) {
        error(n.mark, path, why);
    }
    return addr;
}

std::string Walker::resolve_path(const std::string& path) const {
    std::filesystem::path p(path);
    if (p.is_relative() && !_cfg.directory.empty()) {
        return (std::filesystem::path(_cfg.directory) / p).string();
    }
    return path;
}

bool Walker::named_mapping(const YamlNode& member, const std::string& p, std::string_view what,
                           std::string_view keys) {
    if (!is_name(member.key)) {
        error(member.key_mark, p,
              std::string(what) + " names are 1 to 64 characters of [a-z0-9_-], found " +
                  quote(member.key));
        return false;
    }
    if (!member.is_mapping()) {
        error(member.mark, p,
              "expected a mapping (" + std::string(keys) + "), found " + describe(member));
        return false;
    }
    return true;
}

std::optional<Secret> Walker::secret(const YamlNode& n, const std::string& p,
                                     std::optional<EmptySecret>& unset) {
    // Never describe a scalar here: a secret pasted in place of {value: ...} would be echoed.
    if (!n.is_mapping() || n.children.size() != 1) {
        std::string found = n.is_mapping()
                                ? "a mapping of " + std::to_string(n.children.size()) + " keys"
                            : n.is_sequence() ? "a list"
                            : n.is_null()     ? "nothing"
                                              : "a string";
        error(n.mark, p,
              "expected one of {env: NAME}, {file: PATH} or {value: \"...\"}, found " + found);
        return std::nullopt;
    }
    const YamlNode& source = n.children[0];
    std::string sp = join_path(p, source.key);
    if (!contains(secret_keys, source.key)) {
        check_keys(n, p, secret_keys);
        return std::nullopt;
    }
    if (!source.is_scalar() || source.is_null()) {
        error(source.mark, sp,
              std::string("expected a ") + (source.key == "value" ? "string" : "name") +
                  ", found " + (source.is_null() ? "nothing" : describe(source)));
        return std::nullopt;
    }
    Secret s;
    std::string what;
    std::string until;
    if (source.key == "env") {
        const std::string& name = source.value;
        if (name.empty() || name.find('=') != std::string::npos ||
            name.find('\0') != std::string::npos) {
            error(source.mark, sp, "expected an environment variable name, found " + quote(name));
            return std::nullopt;
        }
        s.source = SecretSource::env;
        // The origin is printed (messages, check's summary, sign): escaped once, here.
        s.origin = "env:" + base::escape_text(name);
        const char* value = std::getenv(name.c_str());
        if (value == nullptr) {
            what = "env " + s.origin.substr(4) + " is not set";
            until = "it is";
        } else {
            s.material = value;
            what = "env " + s.origin.substr(4) + " is empty";
            until = "it is set";
        }
    } else if (source.key == "file") {
        const std::string& file = source.value;
        if (file.empty() || file.find('\0') != std::string::npos) {
            error(source.mark, sp, "expected a file path, found " + quote(file));
            return std::nullopt;
        }
        s.source = SecretSource::file;
        s.origin = "file:" + base::escape_text(file);
        if (auto failure = base::read_regular_file(file, max_secret_file_bytes, s.material)) {
            s.material.clear();
            what = "file " + s.origin.substr(5) + " cannot be read (" + *failure + ")";
            until = "it can";
        } else {
            strip_one_newline(s.material);
            what = "file " + s.origin.substr(5) + " is empty";
            until = "it holds the secret";
        }
    } else {
        s.source = SecretSource::value;
        s.origin = "value";
        s.material = source.value;
        what = "inline secret is empty";
        until = "it is set";
        warn(source.mark, sp, "inline secret: use {env: ...} or {file: ...} in production");
    }
    if (s.material.empty()) {
        unset = EmptySecret{source.mark, sp, std::move(what), std::move(until)};
    }
    return s;
}

void Walker::strip_one_newline(std::string& s) {
    if (!s.empty() && s.back() == '\n') {
        s.pop_back();
        if (!s.empty() && s.back() == '\r') {
            s.pop_back();
        }
    }
}

} // namespace portcullis::config::detail
