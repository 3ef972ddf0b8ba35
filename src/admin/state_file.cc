#include "portcullis/admin/state_file.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/file.hh"

#include <algorithm>
#include <cerrno>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <sys/stat.h>

namespace portcullis::admin {

namespace {

constexpr std::string_view checksum_prefix = "sha256 ";
// max_records lines of a few KiB at most stay well below this.
constexpr size_t max_file_bytes = 4 << 20;

std::string sha256_hex(std::string_view text) {
    TokenDigest d{};
    SHA256(reinterpret_cast<const uint8_t*>(text.data()), text.size(), d.data());
    return base::hex(d);
}

std::string path_of(const StateFile& file, const std::string& dir) {
    return dir + "/" + std::string(file.name);
}

} // namespace

std::string walk_state(const StateFile& file, std::string_view text, const std::string& path,
                       const std::function<std::string(std::string_view record)>& on_record) {
    const std::string_view whole = text;
    size_t line = 0;
    size_t records = 0;
    bool checked = false;
    while (!text.empty()) {
        ++line;
        std::string err = path + ":" + std::to_string(line) + ": ";
        const size_t end = text.find('\n');
        if (end == std::string_view::npos) {
            return err + "no newline at the end of the line (cut short?)";
        }
        const std::string_view l = text.substr(0, end);
        const size_t at = static_cast<size_t>(l.data() - whole.data());
        text.remove_prefix(end + 1);
        if (checked) {
            return err + "text after the checksum line";
        }
        if (line == 1) {
            if (l != file.version_line) {
                err += "expected \"";
                err += file.version_line;
                err += "\" (not a ";
                err += file.kind;
                err += " state file, or one written by a newer portcullis)";
                return err;
            }
        } else if (l.starts_with(checksum_prefix)) {
            if (l.substr(checksum_prefix.size()) != sha256_hex(whole.substr(0, at))) {
                return err + "checksum does not match the lines above (the file was damaged or "
                             "edited)";
            }
            checked = true;
        } else if (records >= file.max_records) {
            err += "more than " + std::to_string(file.max_records) + " ";
            err += file.kind;
            err += "s";
            return err;
        } else {
            ++records;
            if (std::string why = on_record(l); !why.empty()) {
                return err + why;
            }
        }
    }
    if (line == 0) {
        return path + ":1: empty file (cut short?)";
    }
    if (!checked) {
        return path + ":" + std::to_string(line) + ": no checksum line at the end (cut short?)";
    }
    return "";
}

std::string seal_state(const StateFile& file, std::string_view records) {
    std::string text(file.version_line);
    text += '\n';
    text += records;
    const std::string sum = sha256_hex(text);
    text += checksum_prefix;
    text += sum;
    text += '\n';
    return text;
}

std::string read_state_file(
    const StateFile& file, const std::string& dir,
    const std::function<std::string(std::string_view text, const std::string& path)>& parse) {
    const std::string path = path_of(file, dir);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
        return "";
    }
    std::string text;
    if (auto why = base::read_regular_file(path, max_file_bytes, text)) {
        return "cannot read " + path + ": " + *why;
    }
    std::string err = parse(text, path);
    // The text may hold secrets (consumers.state's signing secrets).
    OPENSSL_cleanse(text.data(), text.size());
    return err;
}

std::string write_state_file(const StateFile& file, const std::string& dir, std::string_view text) {
    return base::replace_file(
        path_of(file, dir), [&](int fd) { return base::write_all(fd, text.data(), text.size()); },
        file.mode);
}

std::vector<std::string_view> state_fields(std::string_view line) {
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

bool parse_state_time(std::string_view s, int64_t& out) {
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

bool parse_state_digest(std::string_view s, TokenDigest& out) {
    const bool lower = std::all_of(s.begin(), s.end(), [](char c) { return c < 'A' || c > 'Z'; });
    if (s.size() != 2 * out.size() || !lower) {
        return false;
    }
    auto n = base::hex_decode(s, out);
    return n && *n == out.size();
}

} // namespace portcullis::admin
