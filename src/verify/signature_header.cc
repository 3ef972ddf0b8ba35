// Signature header parsers: strict about structure, lenient about entries they cannot use, since
// providers list several signatures and any one may match.
#include "portcullis/verify/signature_header.hh"

#include "portcullis/base/encoding.hh"

namespace portcullis::verify {

bool decode_signature(std::string_view text, config::Encoding encoding, size_t size,
                      PresentedSignature& out) {
    if (size > out.bytes.size()) {
        return false;
    }
    std::optional<size_t> n;
    if (encoding == config::Encoding::hex) {
        // Checked first so that a long value is refused without decoding it.
        if (text.size() != base::hex_encoded_size(size)) {
            return false;
        }
        n = base::hex_decode(text, out.bytes);
    } else {
        if (text.size() != base::base64_encoded_size(size)) {
            return false;
        }
        n = base::base64_decode(text, out.bytes);
    }
    if (!n || *n != size) {
        return false;
    }
    out.size = static_cast<uint8_t>(size);
    out.kind = signature_hmac;
    return true;
}

Reason read_signature_header(std::span<const http::Header> headers, std::string_view lower_name,
                             std::string_view prefix, config::Encoding encoding, size_t size,
                             PresentedSignature& sig) {
    std::string_view value;
    if (Reason r = single_header_value(headers, lower_name, Reason::signature_missing, value);
        r != Reason::ok) {
        return r;
    }
    if (!value.starts_with(prefix) ||
        !decode_signature(value.substr(prefix.size()), encoding, size, sig)) {
        return Reason::malformed;
    }
    return Reason::ok;
}

StripeSignature parse_stripe_signature(std::string_view value, std::span<PresentedSignature> out) {
    constexpr size_t mac_size = HashState::digest_size(config::Algorithm::sha256);
    StripeSignature result;
    bool have_timestamp = false;
    while (true) {
        const size_t comma = value.find(',');
        const std::string_view item = value.substr(0, comma);
        const size_t eq = item.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            result.reason = Reason::malformed;
            return result;
        }
        const std::string_view key = item.substr(0, eq);
        const std::string_view text = item.substr(eq + 1);
        if (key == "t") {
            if (have_timestamp) {
                result.reason = Reason::malformed;
                return result;
            }
            have_timestamp = true;
            result.timestamp = text;
        } else if (key == "v1" && result.count < out.size() &&
                   decode_signature(text, config::Encoding::hex, mac_size, out[result.count])) {
            ++result.count;
        }
        if (comma == std::string_view::npos) {
            break;
        }
        value.remove_prefix(comma + 1);
    }
    if (!have_timestamp) {
        result.reason = Reason::timestamp_missing;
    } else if (result.count == 0) {
        result.reason = Reason::malformed;
    }
    return result;
}

uint8_t parse_standard_signatures(std::string_view value, std::span<PresentedSignature> out) {
    constexpr size_t mac_size = HashState::digest_size(config::Algorithm::sha256);
    uint8_t count = 0;
    while (!value.empty() && count < out.size()) {
        const size_t space = value.find(' ');
        const std::string_view entry = value.substr(0, space);
        value.remove_prefix(space == std::string_view::npos ? value.size() : space + 1);
        const size_t comma = entry.find(',');
        if (comma == std::string_view::npos) {
            continue;
        }
        const std::string_view version = entry.substr(0, comma);
        const std::string_view text = entry.substr(comma + 1);
        PresentedSignature& sig = out[count];
        if (version == "v1") {
            count += decode_signature(text, config::Encoding::base64, mac_size, sig) ? 1 : 0;
        } else if (version == "v1a" &&
                   decode_signature(text, config::Encoding::base64, ed25519_signature_size, sig)) {
            sig.kind = signature_ed25519;
            ++count;
        }
    }
    return count;
}

bool SignedTemplate::parse(std::string_view t) {
    constexpr std::string_view body = "{body}";
    _prefix.clear();
    if (!t.ends_with(body)) {
        return false;
    }
    std::string_view prefix = t.substr(0, t.size() - body.size());
    for (size_t i = 0; i < prefix.size(); ++i) {
        if (prefix[i] == '}') {
            return false;
        }
        if (prefix[i] == '{') {
            if (prefix.substr(i, placeholder.size()) != placeholder) {
                return false;
            }
            i += placeholder.size() - 1;
        }
    }
    _prefix = prefix;
    return true;
}

} // namespace portcullis::verify
