// Strict, incremental, zero-copy HTTP/1.1 request parsing for the public plane: the request head
// (request line and header section) and the chunked body framing.
//
//   Header storage[64];
//   RequestHead head;
//   HeadResult r = parse_head(received, scanned_before, limits, storage, head);
//   if (r.error != Error::none) { answer(status_of(r.error)); close(); count(r.detail); }
//   else if (r.consumed == 0) { scanned_before = received.size(); wait_for_more(); }
//   else { route(head); body starts at received.substr(r.consumed); }
//
// parse_head is stateless (picohttpparser-like): on "incomplete" the caller appends bytes and
// calls again with the whole buffer from the same start. Nothing is copied: every view in
// RequestHead points into the caller's buffer, which must outlive it.
//
// What it accepts, on top of RFC 9112: only origin-form targets ("/path?query"); absolute-form,
// authority-form and asterisk-form are refused, since this server only serves its own paths.
// Empty lines (CRLF) before the request line are skipped (RFC 9112 section 2.2) and count in
// `consumed` and in limits.header_bytes. Every line must end in CRLF; bare LF, bare CR, obs-fold,
// whitespace before a colon, two Content-Lengths, Content-Length with Transfer-Encoding, a
// Transfer-Encoding that does not end in chunked and an HTTP/1.1 request without exactly one
// valid Host are all 400. Expect values other than 100-continue are 400 (not 417). Errors on a
// header line are reported once that line is complete (its LF arrived); errors on the request
// line and on the first byte of a header line are reported as soon as the byte arrives.
#pragma once

#include "portcullis/http/header.hh"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::http {

enum class Error : uint8_t {
    none,
    bad_request,         // 400, connection closed
    header_too_large,    // 431, connection closed (header section over limits.header_bytes or
                         //       more than limits.max_headers fields)
    version_unsupported, // 505, connection closed (HTTP/2.0, HTTP/0.9-like, HTTP/3 ...)
    not_implemented,     // 501 for Transfer-Encoding codings other than a final chunked
};

// 400/431/505/501 (200 for Error::none).
uint16_t status_of(Error e);
// Stable short code for logs and counters: "malformed", "header_too_large",
// "version_unsupported", "not_implemented" ("ok" for Error::none).
std::string_view reason_of(Error e);

enum class BodyFraming : uint8_t { none, content_length, chunked };

struct Limits {
    uint32_t header_bytes = 16 * 1024; // request line + header fields + final CRLF
    uint32_t max_headers = 64;
};

struct RequestHead {
    std::string_view method;         // token, as sent (case-sensitive)
    std::string_view target;         // request-target as sent
    std::string_view path;           // target up to '?' (origin-form only; others are refused)
    std::string_view query;          // after '?', without it; empty if none
    uint8_t minor_version = 1;       // HTTP/1.0 -> 0; HTTP/1.1 and 1.2..1.9 -> 1 (served as 1.1)
    std::span<const Header> headers; // into the caller's array, in order received
    BodyFraming framing = BodyFraming::none;
    uint64_t content_length = 0;  // when framing == content_length ("Content-Length: 0" included)
    std::string_view host;        // empty only for HTTP/1.0 without Host
    bool keep_alive = true;       // HTTP/1.1 default on unless "Connection: close";
                                  // HTTP/1.0 default off unless "Connection: keep-alive"
    bool expect_continue = false; // "Expect: 100-continue" (case-insensitive) in HTTP/1.1; other
                                  // Expect values -> Error::bad_request; ignored in HTTP/1.0
};

struct HeadResult {
    size_t consumed = 0; // > 0 when the head is complete: bytes up to and including the
                         // CRLF that ends the header section
    Error error = Error::none;
    std::string_view detail; // finer reason when error != none, e.g. "bare_lf", "obs_fold",
                             // "cl_and_te", "duplicate_content_length", "missing_host"
    // consumed == 0 && error == none: incomplete, call again with more bytes
};

// Parses the request line and header section at the start of `buf`. When it returns
// incomplete, the caller appends more bytes and calls again with the whole buffer from the same
// start. `scanned` is how many bytes of buf the caller already passed in previous incomplete
// calls; it lets a slow sender's bytes be looked at about once instead of once per read.
// Passing 0 is always correct. `headers` is caller storage of limits.max_headers entries (fewer
// lowers the limit). Views in `out` point into buf; `out` is only meaningful when the head is
// complete. If buf.size() > limits.header_bytes and the head does not end within the first
// header_bytes bytes, the answer is header_too_large at once. Bytes after the head (body,
// pipelined requests) are never looked at.
HeadResult parse_head(std::string_view buf, size_t scanned, const Limits& limits,
                      std::span<Header> headers, RequestHead& out);

// The code parse_head uses to classify the bytes of a head, 64 at a time: AVX-512 (BW) or AVX2
// when the build and the CPU have them, else SSE2 (every x86-64). The scalar path classifies
// nothing and parses byte by byte (elsewhere, and as the reference). All give the same answers;
// the best available one is picked at start-up. Tests and benchmarks switch paths to compare
// them; switching while other threads parse is not supported.
enum class ScanPath : uint8_t { scalar, sse2, avx2, avx512 };
ScanPath scan_path();
bool scan_path_available(ScanPath path);
// Switches to `path`; returns false and changes nothing when it is not available.
bool use_scan_path(ScanPath path);

// Incremental decoder of a chunked body (RFC 9112 section 7.1). Keeps a few bytes of state;
// never copies data. Chunk extensions and trailer fields are checked strictly and ignored.
// A chunk-size line (size and extensions) is limited to 4 KiB and the trailer section to
// 16 KiB; past either the body is refused as bad_request.
class ChunkedDecoder {
public:
    struct Step {
        size_t consumed = 0;   // input bytes used by this call
        std::string_view data; // body bytes found (a view into the input), may be empty
        bool done = false;     // last-chunk, trailers and final CRLF consumed
        Error error = Error::none;
        std::string_view detail;
    };
    // Consumes input up to the end of the next run of body data (returned as `data`), or until
    // the input is exhausted or the message ends. Call repeatedly with the unconsumed rest.
    // Bytes after `done` are not consumed (they belong to the next pipelined request). After an
    // error or `done`, every call repeats that answer and consumes nothing, until reset().
    Step feed(std::string_view in);
    // Ready for the next message.
    void reset();

private:
    uint64_t _remaining = 0;  // chunk-size being read, then data bytes left in the chunk
    uint32_t _line_bytes = 0; // bytes of the current chunk-size line, or of the trailer section
    uint8_t _state = 0;
    uint8_t _digits = 0;  // hex digits of the chunk-size read so far
    uint8_t _failure = 0; // which detail, once the state is "failed"
};

} // namespace portcullis::http
