// The pieces of a sink's configuration that the loader checks value by value (SPEC section 8):
// URLs, subject and stream templates, the fields an http sink adds, exec's program. Each takes
// text and says what is wrong with it; the loader's walk (loader_sinks.cc) puts the messages at the
// right file:line:column and key path.
//
// Messages quote only the offending piece of a URL, never the whole of it: a URL refused for
// holding credentials must not print them.
//
//   std::string why;
//   HttpSinkConfig http;
//   if (!parse_http_url("https://[::1]:8443/hooks?x=1", http, why)) { ... }
//   http.host == "::1"; http.port == 8443; http.path_and_query == "/hooks?x=1";
#pragma once

#include "portcullis/config/config.hh"

#include <optional>
#include <string>
#include <string_view>

namespace portcullis::config::detail {

// scheme://host[:port][path][?query], taken apart. The parse is strict (RFC 3986): ASCII only,
// no userinfo (credentials have keys of their own), no fragment, well-formed percent escapes,
// a host that is a DNS name ([A-Za-z0-9_-] labels), a dotted-quad IPv4 address or a bracketed
// IPv6 address (no zone), a port from 1 to 65535.
struct SinkUrl {
    std::string scheme;           // lowercased
    std::string host;             // lowercased; IPv6 without brackets
    std::optional<uint16_t> port; // as written
    std::string path_and_query;   // as written; "" when the URL has neither
};
std::optional<SinkUrl> parse_sink_url(std::string_view text, std::string& why);

// Each kind's URL: its schemes, default port and what its path may hold. Fill in the url, tls,
// host and port members (and path_and_query, db); on failure return false and set why.
bool parse_http_url(std::string_view text, HttpSinkConfig& out, std::string& why);   // http, https
bool parse_nats_url(std::string_view text, NatsSinkConfig& out, std::string& why);   // nats, tls
bool parse_redis_url(std::string_view text, RedisSinkConfig& out, std::string& why); // redis(s)

// Empty when text is a valid template of its kind, else why not. {route} is the one
// placeholder; the text around it must make a valid NATS subject (dot-separated tokens of
// printable ASCII, no wildcard, not starting with $) or Redis key (printable ASCII, no spaces)
// for every route name.
std::string nats_subject_error(std::string_view subject);
std::string redis_stream_error(std::string_view stream);

// An http sink's `method`, upper-cased; why is set when it is not a token or is a method that
// cannot carry the job's body (CONNECT, HEAD, TRACE).
std::optional<std::string> sink_method(std::string_view text, std::string& why);

// Empty when a field of an http sink's `headers` may be added to every delivery. A name is
// refused when portcullis sets that field itself: Portcullis-*, Host, Content-Length, the
// hop-by-hop fields (Connection, Transfer-Encoding, ...), and with signing the Standard Webhooks
// fields webhook-id, webhook-timestamp, webhook-signature. A value holds no control bytes
// other than horizontal tab (RFC 9110 5.5): no CR, LF or NUL.
std::string sink_header_name_error(std::string_view name, bool signing);
std::string sink_header_value_error(std::string_view value);

// Empty when program (command[0]) is an absolute path. A bare name is refused rather than
// looked up on PATH when the command runs (check and serve may run with different PATHs); the
// message says what this host's PATH finds for it, to copy in.
std::string command_path_error(std::string_view program);

// Empty when program is a regular file this process may execute, else why not ("No such file
// or directory"). A warning only: check may run on another host than serve.
std::string command_run_error(const std::string& program);

// Empty when user is a user name for credentials: printable ASCII, no spaces.
std::string user_name_error(std::string_view user);

// Empty when seed has the shape of a NATS user nkey seed (SU and 56 base32 characters), else
// why not, without any of the seed's characters.
std::string nkey_seed_error(std::string_view seed);

} // namespace portcullis::config::detail
