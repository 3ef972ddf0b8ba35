// Parsers of the signature headers that providers send: outside bytes, so each has a fuzz
// target (fuzz/stripe_signature_fuzz.cc, fuzz/standard_signature_fuzz.cc, ...). They decode
// into caller storage and never allocate.
//
//   std::array<PresentedSignature, max_signatures> sigs;
//   StripeSignature s = parse_stripe_signature("t=1492774577,v1=5257a869...", sigs);
//   if (s.reason == Reason::ok) { check_timestamp(s.timestamp, ...); use sigs[0, s.count); }
#pragma once

#include "portcullis/config/config.hh"
#include "portcullis/verify/verifier.hh"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::verify {

// PresentedSignature::kind values.
constexpr uint8_t signature_hmac = 0;
constexpr uint8_t signature_ed25519 = 1;
constexpr size_t ed25519_signature_size = 64;
constexpr size_t ed25519_key_size = 32;

// Decodes `text` (hex, either case; or padded standard base64) into out, which must then hold
// exactly `size` bytes; false otherwise (wrong length, a byte outside the alphabet, misplaced
// padding). size <= max_mac_size.
bool decode_signature(std::string_view text, config::Encoding encoding, size_t size,
                      PresentedSignature& out);

// The one `lower_name` header holding `prefix` and then a MAC of `size` bytes in `encoding`
// (GitHub's "sha256=<hex>", Slack's "v0=<hex>", Shopify's bare base64, the hmac scheme's
// configured form), decoded into sig. signature_missing when absent; malformed when repeated or
// not of that form. Precondition: lower_name is lowercase.
Reason read_signature_header(std::span<const http::Header> headers, std::string_view lower_name,
                             std::string_view prefix, config::Encoding encoding, size_t size,
                             PresentedSignature& sig);

struct StripeSignature {
    Reason reason = Reason::ok;
    std::string_view timestamp; // the t= value, as sent (not yet checked)
    uint8_t count = 0;          // decoded v1 signatures in the caller's array
};

// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`: comma-separated key=value
// items. Exactly one t. Every v1 that is 64 hex characters is kept (up to out.size()); other
// keys (v0, future schemes) and v1 values that do not decode are skipped, since any v1 may
// match. Refusals: an item without '=' or with an empty key, or a second t: malformed; no t:
// timestamp_missing; no usable v1: malformed (a header with only v0 is refused this way).
StripeSignature parse_stripe_signature(std::string_view value, std::span<PresentedSignature> out);

// `webhook-signature` (Standard Webhooks, also `svix-signature`): space-separated
// `<version>,<base64>` entries. `v1` entries decoding to 32 bytes are kept as signature_hmac and
// `v1a` entries decoding to 64 bytes as signature_ed25519 (up to out.size() in all); unknown
// versions and entries that do not decode are skipped, since any entry may match. Returns how
// many were kept; 0 means the header holds nothing this server can check (malformed).
uint8_t parse_standard_signatures(std::string_view value, std::span<PresentedSignature> out);

// The `hmac` scheme's `template`, validated by the config loader: literal text and
// {timestamp} placeholders, ending in the one {body}. The part before {body} is the signed
// prefix, built per request from the literal text and the timestamp as sent.
class SignedTemplate {
public:
    // False (and nothing kept) unless t is literal text and {timestamp}s followed by a final
    // {body}, with no other '{' or '}'.
    bool parse(std::string_view t);
    // Calls emit(piece) for each piece of the prefix in order: literal text, or `timestamp`.
    template <typename Emit>
    void render_prefix(std::string_view timestamp, Emit&& emit) const {
        std::string_view rest = _prefix;
        while (!rest.empty()) {
            const size_t at = rest.find(placeholder);
            if (at != 0) {
                emit(rest.substr(0, at));
            }
            if (at == std::string_view::npos) {
                return;
            }
            emit(timestamp);
            rest.remove_prefix(at + placeholder.size());
        }
    }
    bool uses_timestamp() const { return _prefix.find(placeholder) != std::string::npos; }

private:
    static constexpr std::string_view placeholder = "{timestamp}";
    std::string _prefix; // the template without its final {body}
};

} // namespace portcullis::verify
