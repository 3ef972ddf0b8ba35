// The key table (keys.hh) for people: plain text for `portcullis config-keys`, roff for
// portcullis.yaml(5).
#include "portcullis/config/keys.hh"

namespace portcullis::config {

namespace {

constexpr std::string_view secret_parent = "<secret>";

// Text for a roff line: backslashes are the escape character, and a line starting with a dot
// or a quote would be a request.
std::string roff_text(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '\\') {
            out += "\\e";
        } else if (c == '-') {
            out += "\\-"; // a minus: option names and values are copied and pasted
        } else {
            out += c;
        }
    }
    if (!out.empty() && (out[0] == '.' || out[0] == '\'')) {
        out.insert(0, "\\&");
    }
    return out;
}

std::string_view top_section(std::string_view path) {
    return path.substr(0, path.find('.'));
}

void roff_key(std::string& out, const KeyDoc& k, std::string_view shown) {
    out += ".TP\n.B " + roff_text(shown) + "\n";
    out += "\\fI" + roff_text(k.type) + "\\fP";
    if (!k.fallback.empty()) {
        out += "; default \\fB" + roff_text(k.fallback) + "\\fP";
    }
    out += ".\n.br\n" + roff_text(k.meaning) + "\n";
}

} // namespace

std::string key_reference_text() {
    std::string out;
    for (const KeyDoc& k : key_table) {
        out += std::string(k.path) + "\n    " + std::string(k.type);
        if (!k.fallback.empty()) {
            out += "; default " + std::string(k.fallback);
        }
        out += "\n    " + std::string(k.meaning) + "\n";
    }
    return out;
}

std::string key_reference_roff() {
    std::string out = ".\\\" Generated from include/portcullis/config/keys.hh by portcullis "
                      "config-keys --roff.\n";
    out += ".SH KEYS\n"
           "In the paths below, \\fB*\\fP stands for a name chosen in the configuration (a "
           "route, a sink, a token, a header, a file) and \\fB[]\\fP for the items of a list. "
           "A key that is not listed here is an error naming the keys allowed in its place.\n";
    for (const KeyDoc& top : key_table) {
        if (key_parent(top.path) != "" || top.path.starts_with("<")) {
            continue;
        }
        out += ".SS " + roff_text(top.path) + "\n" + roff_text(top.meaning) + "\n";
        for (const KeyDoc& k : key_table) {
            if (key_parent(k.path) != "" && top_section(k.path) == top.path) {
                roff_key(out, k, k.path);
            }
        }
    }
    out += ".SH SECRETS\n"
           "Every secret (an item of a route's \\fBverify.secrets\\fP or of a sink's "
           "\\fBsign.secrets\\fP, a NATS or Redis credential) is a mapping of exactly one of "
           "these keys. Secrets never appear in messages, logs or the summary of \\fBcheck\\fP, "
           "which name them by their origin (\\fBenv:NAME\\fP, \\fBfile:PATH\\fP).\n";
    for (const KeyDoc& k : key_table) {
        if (key_parent(k.path) == secret_parent) {
            roff_key(out, k, key_name(k.path));
        }
    }
    return out;
}

} // namespace portcullis::config
