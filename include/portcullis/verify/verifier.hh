// Signature verification (SPEC section 3): one Verifier per route, built at config load by
// make_verifier() from the registration table in src/verify/registry.cc, one file per scheme.
// Per request the connection layer drives it through a fixed-size VerifyState:
//
//   std::string error;
//   auto v = verify::make_verifier(route.verify, error);        // start-up; nullptr + error
//   ...
//   Reason r = v->begin(headers, now_unix_ns, st);              // headers complete
//   if (r != Reason::ok) { refuse 401 before reading the body; log reason_code(r); }
//   v->update(st, part);                                        // each piece of body
//   r = v->finish(st, {record, body_start});                    // body complete
//   if (r == Reason::ok) { answer = v->handshake(body, out); }  // empty: enqueue the job
//
// Nothing here allocates, locks, throws or makes a syscall once the verifier is built.
#pragma once

#include "portcullis/base/reject_reason.hh"
#include "portcullis/config/config.hh"
#include "portcullis/http/header.hh"
#include "portcullis/verify/hmac.hh"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::verify {

// Stable reason codes (SPEC section 3); reason_code() gives the snake_case text.
enum class Reason : uint8_t {
    ok,
    signature_missing,
    signature_mismatch,
    timestamp_missing,
    timestamp_malformed,
    timestamp_too_old,
    timestamp_too_new,
    secret_unset,
    malformed,
};

constexpr std::string_view reason_code(Reason r) {
    switch (r) {
    case Reason::ok:
        return "ok";
    case Reason::signature_missing:
        return "signature_missing";
    case Reason::signature_mismatch:
        return "signature_mismatch";
    case Reason::timestamp_missing:
        return "timestamp_missing";
    case Reason::timestamp_malformed:
        return "timestamp_malformed";
    case Reason::timestamp_too_old:
        return "timestamp_too_old";
    case Reason::timestamp_too_new:
        return "timestamp_too_new";
    case Reason::secret_unset:
        return "secret_unset";
    case Reason::malformed:
        return "malformed";
    }
    return "malformed";
}

// A refusal's reason among all of them (base::RejectReason mirrors Reason, less ok).
constexpr base::RejectReason reject_reason_of(Reason r) {
    return r == Reason::ok ? base::RejectReason::malformed
                           : static_cast<base::RejectReason>(static_cast<uint8_t>(r) - 1);
}
static_assert(base::reject_reason_code(reject_reason_of(Reason::malformed)) == "malformed" &&
                  base::reject_reason_code(reject_reason_of(Reason::signature_missing)) ==
                      "signature_missing" &&
                  base::reject_reason_code(reject_reason_of(Reason::secret_unset)) ==
                      "secret_unset",
              "base::RejectReason mirrors Reason");

constexpr size_t max_secrets = 8;    // config allows at most 8 per route
constexpr size_t max_signatures = 8; // presented signatures kept per request; more are ignored
constexpr size_t max_handshake_answer = 160; // fits the connection's answer buffer with headers
// The longest signed prefix a scheme keeps for finish(): standard's "{id}.{ts}." with ids of up
// to ~100 characters. Only schemes that cannot stream (Ed25519) keep it; longer is malformed.
constexpr size_t max_signed_prefix = 128;
// Most Ed25519 verifications one request may cost (presented v1a signatures x public keys):
// each is ~50 us of CPU, so an unsigned request must not be able to ask for many.
constexpr size_t max_ed25519_checks = 8;

static_assert(max_mac_size >= 64, "a presented signature must hold an Ed25519 signature");

struct PresentedSignature {
    std::array<uint8_t, max_mac_size> bytes;
    uint8_t size = 0;
    uint8_t kind = 0; // scheme-defined, e.g. standard's v1 (HMAC) and v1a (Ed25519)
};

// Per-request state: fixed size, no heap, lives inside the connection's request storage and is
// reused across the requests of a connection (begin() resets what it needs).
struct VerifyState {
    // One stream per usable secret, in the verifier's key order.
    std::array<HmacStream, max_secrets> macs;
    // The presented signatures, decoded; [0, signature_count) are valid.
    std::array<PresentedSignature, max_signatures> signatures;
    // Unix seconds taken from the request, for schemes that sign a timestamp.
    int64_t timestamp = 0;
    // The signed prefix, for schemes that cannot stream: BoringSSL's Ed25519 wants prefix and
    // body as one message, so it is rebuilt at finish().
    std::array<char, max_signed_prefix> prefix;
    uint8_t prefix_size = 0;
    uint8_t signature_count = 0;
    // Ed25519 verifications finish() ran for this request, for the metrics: unlike an HMAC,
    // their cost does not shrink with the body.
    uint8_t ed25519_checks = 0;
    // Set by a successful begin() and cleared by finish(), so that finish() can never accept a
    // request whose begin() refused it, or a request twice.
    bool begun = false;

    // Appends to the kept prefix; false (and the prefix left as it was) when it would not fit.
    bool keep_prefix(std::string_view part) {
        if (part.size() > prefix.size() - prefix_size) {
            return false;
        }
        std::copy(part.begin(), part.end(), prefix.begin() + prefix_size);
        prefix_size = static_cast<uint8_t>(prefix_size + part.size());
        return true;
    }

    void reset() {
        timestamp = 0;
        prefix_size = 0;
        signature_count = 0;
        ed25519_checks = 0;
        begun = false;
    }
};
// 8 * 224 (streams: a SHA-512 context and the algorithm) + 8 * 66 (signatures) + 8 + 128 + 3,
// padded: 2464 bytes. Grows only if a scheme needs more than this; keep an eye on it.
static_assert(sizeof(VerifyState) <= 2464, "VerifyState lives in every request slot");

// The complete body where it lies: buffer[body_start, end). The bytes before body_start belong
// to the caller (the job record's head). Ed25519 schemes cannot stream, and BoringSSL verifies
// one contiguous message: they borrow the prefix's length of bytes just before the body, write
// the signed prefix there, verify, and put the bytes back before returning.
// Precondition: body_start >= max_signed_prefix or >= any prefix a scheme keeps (the record head
// holds the request's headers, which are longer than the prefix built from them).
struct BodyBuffer {
    std::span<uint8_t> buffer;
    size_t body_start = 0;

    std::span<const uint8_t> body() const { return buffer.subspan(body_start); }
};

class Verifier {
public:
    virtual ~Verifier() = default;
    // Reads the headers the scheme needs, decodes the presented signature(s), checks any
    // timestamp window against now_unix_ns (both directions), and seeds each secret's MAC with
    // the signed prefix. Anything but Reason::ok refuses the request (401) before its body is
    // read. A route without a usable secret gives Reason::secret_unset.
    virtual Reason begin(std::span<const http::Header> headers, int64_t now_unix_ns,
                         VerifyState& st) const = 0;
    // Feeds the next piece of body, as it arrives (no second pass over the body).
    virtual void update(VerifyState& st, std::span<const uint8_t> body_part) const = 0;
    // Called once the body is complete (Ed25519 schemes need it whole; HMAC schemes ignore it).
    // Compares in constant time; any configured secret may match. Never Reason::ok unless the
    // preceding begin() gave Reason::ok.
    virtual Reason finish(VerifyState& st, BodyBuffer body) const = 0;
    // Called after finish() gave Reason::ok. A provider's handshake (Slack url_verification,
    // Discord PING) is answered with a 200 and the JSON written to `out` (returned as a view of
    // it) instead of being enqueued; an ordinary webhook gives an empty view. The answer never
    // exceeds max_handshake_answer bytes.
    virtual std::string_view handshake(std::span<const uint8_t> /*body*/,
                                       std::span<char> /*out*/) const {
        return {};
    }
    // Name (lowercase) of a request header whose value is itself a secret and therefore must
    // not be stored with the job (shared_secret's header); empty otherwise.
    virtual std::string_view secret_header() const { return {}; }
};

// The one registration table: config::Scheme -> factory. Builds the route's verifier at
// config load (precomputing key pads, decoding keys). Schemes not implemented yet return
// nullptr with error = "scheme \"stripe\" is not available in this build yet".
std::unique_ptr<Verifier> make_verifier(const config::VerifyConfig& cfg, std::string& error);

// ---- Building blocks for the schemes ----

struct HeaderMatch {
    const http::Header* header = nullptr; // the first one, nullptr when absent
    bool repeated = false;                // present more than once
};

// Looks up a header that must appear at most once. Schemes refuse a repeated signature or
// timestamp header as malformed: which copy did a proxy in front of us check?
// Precondition: lower_name is lowercase.
constexpr HeaderMatch find_single_header(std::span<const http::Header> headers,
                                         std::string_view lower_name) {
    HeaderMatch m;
    for (const http::Header& h : headers) {
        if (http::name_equals(h.name, lower_name)) {
            if (m.header != nullptr) {
                m.repeated = true;
                break;
            }
            m.header = &h;
        }
    }
    return m;
}

// The value of a header that must appear at most once: Reason::ok, `if_absent` when it is not
// there, or malformed when it is repeated. Precondition: lower_name is lowercase.
constexpr Reason single_header_value(std::span<const http::Header> headers,
                                     std::string_view lower_name, Reason if_absent,
                                     std::string_view& value) {
    const HeaderMatch m = find_single_header(headers, lower_name);
    if (m.header == nullptr) {
        return if_absent;
    }
    if (m.repeated) {
        return Reason::malformed;
    }
    value = m.header->value;
    return Reason::ok;
}

// Parses a timestamp header value as decimal Unix seconds (digits only, at most 18) into
// seconds and checks that it lies within tolerance_ns of now_unix_ns in both directions: a
// sender clock ahead of ours is refused like one behind. The edges are accepted.
constexpr Reason check_timestamp(std::string_view text, int64_t now_unix_ns, int64_t tolerance_ns,
                                 int64_t& seconds) {
    if (text.empty() || text.size() > 18) {
        return Reason::timestamp_malformed;
    }
    int64_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') {
            return Reason::timestamp_malformed;
        }
        value = value * 10 + (c - '0');
    }
    seconds = value;
    constexpr int64_t ns_per_s = 1'000'000'000;
    if (value > INT64_MAX / ns_per_s) {
        // Past the year 2262: later than any now_unix_ns can be.
        return Reason::timestamp_too_new;
    }
    const int64_t stamp_ns = value * ns_per_s;
    // Differences of two int64 values fit in uint64 when taken in the right order.
    const auto tolerance = static_cast<uint64_t>(tolerance_ns < 0 ? 0 : tolerance_ns);
    if (now_unix_ns > stamp_ns) {
        const uint64_t age = static_cast<uint64_t>(now_unix_ns) - static_cast<uint64_t>(stamp_ns);
        return age > tolerance ? Reason::timestamp_too_old : Reason::ok;
    }
    const uint64_t lead = static_cast<uint64_t>(stamp_ns) - static_cast<uint64_t>(now_unix_ns);
    return lead > tolerance ? Reason::timestamp_too_new : Reason::ok;
}

// The signed timestamp header of a windowed scheme: present once, decimal, inside the window
// around now_unix_ns. On Reason::ok, `text` is the value as sent (it is signed as sent) and
// st.timestamp its value.
constexpr Reason read_timestamp(std::span<const http::Header> headers, std::string_view lower_name,
                                int64_t now_unix_ns, int64_t tolerance_ns, VerifyState& st,
                                std::string_view& text) {
    if (Reason r = single_header_value(headers, lower_name, Reason::timestamp_missing, text);
        r != Reason::ok) {
        return r;
    }
    return check_timestamp(text, now_unix_ns, tolerance_ns, st.timestamp);
}

// Base of the schemes that decide in begin() from the headers alone (shared_secret, none):
// the body needs no hashing, and finish() confirms the decision of begin() once.
class HeaderOnlyScheme : public Verifier {
public:
    void update(VerifyState& /*st*/, std::span<const uint8_t> /*body_part*/) const override {}
    Reason finish(VerifyState& st, BodyBuffer /*body*/) const override {
        if (!st.begun) {
            return Reason::malformed;
        }
        st.begun = false;
        return Reason::ok;
    }
};

// Base of the schemes that MAC a signed prefix and the body with every usable secret (github,
// stripe, slack, shopify, hmac, and standard's v1). A scheme's begin() calls start(st), which
// resets it and refuses with secret_unset when no secret is usable, decodes the presented
// signature(s) into st, calls start_macs(st) and feed()s its prefix, then sets st.begun. update()
// and finish() are shared: finish() computes every MAC and compares it with every presented
// signature, without early exit, so the time taken does not depend on which secret or signature
// matched.
class HmacScheme : public Verifier {
public:
    void update(VerifyState& st, std::span<const uint8_t> body_part) const override;
    Reason finish(VerifyState& st, BodyBuffer body) const override;

    // One key per secret with material, in order; secrets left empty (env var unset, file
    // missing) are skipped. The key is the secret's bytes as written.
    static std::vector<HmacKey> keys_from(config::Algorithm alg,
                                          const std::vector<config::Secret>& secrets);

protected:
    // Precondition: keys.size() <= max_secrets (make_verifier checks the route's secrets).
    explicit HmacScheme(std::vector<HmacKey> keys);

    bool has_keys() const { return !_keys.empty(); }
    Reason start(VerifyState& st) const {
        st.reset();
        return has_keys() ? Reason::ok : Reason::secret_unset;
    }
    void start_macs(VerifyState& st) const;
    void feed(VerifyState& st, std::string_view signed_text) const;
    // Finishes every stream; true when any MAC equals any presented signature.
    bool any_mac_matches(VerifyState& st) const;

    std::vector<HmacKey> _keys;
};

} // namespace portcullis::verify
