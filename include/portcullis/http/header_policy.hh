// Which request fields a job keeps, and which of them a rejection log line shows. One policy per
// route, applied where the record's headers block is built and where a refusal is logged, so
// that a field the spool does not keep never reaches a log line either.
//
//   StoredFields policy{verifier.secret_header(), credential_bits_of(route.keep_headers)};
//   size_t n = select_stored(head.headers, policy, scratch); // scratch.size() >= headers
//   log_headers(line, head.headers, policy);                  // the "headers" object
#pragma once

#include "portcullis/base/log.hh"
#include "portcullis/http/header.hh"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::http {

// Fields that describe the connection, not the webhook: Connection, Keep-Alive,
// Transfer-Encoding, TE, Upgrade, Proxy-Connection, Trailer, Expect.
bool is_hop_by_hop(std::string_view name);

// Credentials a client may send along with a webhook (a proxy's or a gateway's, a browser's
// session). They open doors elsewhere, so a job does not carry them to its consumers unless its
// route's keep_headers names them. One bit each, in the order of credential_names.
constexpr std::array<std::string_view, 3> credential_names = {"authorization",
                                                              "proxy-authorization", "cookie"};
// The bit of name (any case) among credential_names; 0 when name is not a credential.
uint8_t credential_bit(std::string_view name);

struct StoredFields {
    // The field that carries the route's secret (the shared_secret scheme's header), lowercase;
    // empty when the scheme has none. Never stored, whatever keep_headers says.
    std::string_view secret_header;
    // Credential bits the route keeps (keep_headers).
    uint8_t kept_credentials = 0;

    // False for hop-by-hop fields, the secret header, and credentials the route does not keep.
    bool stores(std::string_view name) const;
};

// Copies the fields policy stores into out, in order, less those a Connection field of headers
// lists (hop-by-hop for this request, RFC 9110 section 7.6.1); returns how many. Precondition:
// out.size() >= headers.size().
size_t select_stored(std::span<const Header> headers, const StoredFields& policy,
                     std::span<Header> out);

// How much of a logged value is shown: signature values are cut so that a line never carries a
// usable signature; identifying values are cut so that a line stays bounded.
constexpr size_t logged_signature_bytes = 12;
constexpr size_t logged_value_bytes = 128;

// Adds the "headers" object of a rejection line: the allow-listed identifying and signature
// fields among headers that policy stores, under their lowercase names, one key per field. A
// field sent more than once has its values joined in order with ", " (as RFC 9110 5.3 combines
// them), and the joined value is cut as one: a repeated field takes no more room than a single
// one.
void log_headers(base::LogLine& line, std::span<const Header> headers, const StoredFields& policy);

// The same fields as one JSON object ({"user-agent":"..",..}) written into out, for the
// webhook.rejected event; cut after the last whole field that fits. Returns its size (0 when
// not even "{}" fits). No allocation.
constexpr size_t json_headers_bytes = 2048;
size_t json_headers(std::span<char> out, std::span<const Header> headers,
                    const StoredFields& policy);

} // namespace portcullis::http
