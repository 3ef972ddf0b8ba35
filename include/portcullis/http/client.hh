// The client side of HTTP/1.1 for the HTTP sink: the head of an outgoing request, and a strict,
// incremental, zero-copy parser of the response. No sockets, no allocation, no exceptions.
//
//   char head[4096];
//   size_t n = write_request(head, {.method = "POST", .target = "/hooks", .host = "app",
//                                   .port = 8443, .tls = true, .headers = fields,
//                                   .content_length = body.size()});
//   if (n == 0) { count(request_refusal(r)); }   // or the head does not fit
//   else { send head[0, n) and body with one vectored write; }
//
//   std::array<Header, 64> storage;
//   ResponseParser p(storage, Limits{});
//   p.reset(/*head_request=*/false);
//   // Per read: `pending` = the bytes the last call left unconsumed, then the new ones.
//   for (;;) {
//       ResponseParser::Step s = p.feed(pending);
//       pending.remove_prefix(s.consumed);
//       if (s.event == ResponseEvent::need_more) { break; }  // keep `pending`, read more
//       if (s.event == ResponseEvent::head) { status = p.head().status; ... }
//       if (s.event == ResponseEvent::data) { keep the first 1 KiB of s.data for the log; }
//       if (s.event == ResponseEvent::done || s.event == ResponseEvent::error) { ...; break; }
//   }
//   // On EOF: p.finish() ends a body read until close, or says how the response was cut.
//
// What the parser refuses, on top of RFC 9112: every line must end in CRLF (bare LF, bare CR,
// obs-fold are errors), a Transfer-Encoding other than a single chunked, Content-Length with
// Transfer-Encoding, Content-Lengths that disagree, Transfer-Encoding in HTTP/1.0, status codes
// outside 100-599, 101 (this client never asks to switch protocols), and versions other than
// HTTP/1.x. It accepts a status line without the space before an empty reason
// ("HTTP/1.1 200\r\n"), and repeated Content-Lengths of one value (RFC 9110 section 8.6). Errors
// are reported once the LF of the line that holds them has arrived, or when the head passes
// limits.header_bytes, so that any split of the input gives the same answer.
#pragma once

#include "portcullis/http/header.hh"
#include "portcullis/http/parser.hh"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace portcullis::http {

struct OutgoingRequest {
    std::string_view method = "POST"; // a token
    std::string_view target = "/";    // origin-form: '/' then visible ASCII
    std::string_view host;            // reg-name, IPv4, or IPv6 bare ("::1", as the sink's
                                      // configuration keeps it) or in brackets
    uint16_t port = 0;                // 0 or the scheme's default: Host without a port
    bool tls = false;                 // https: the default port is 443, else 80
    std::span<const Header> headers;  // sent in order, after Host
    uint64_t content_length = 0;      // the body's size; the body is not written here
    bool close = false;               // "Connection: close" instead of "Connection: keep-alive"
};

// Writes the request head (request line, Host, the caller's fields, Content-Length, Connection,
// final CRLF) into out and returns its size; the caller sends the body after it. Returns 0 when
// the head does not fit or the request is refused (see request_refusal). Content-Length is left
// out only for a GET or HEAD without body (RFC 9110 section 8.6).
size_t write_request(std::span<char> out, const OutgoingRequest& r);

// Why write_request refuses r, as a stable short code; empty when it does not. Refused: a method
// that is not a token ("bad_method"), a target that is not origin-form or has a byte other than
// visible ASCII ("bad_target"), a host that is not a reg-name or IP address ("bad_host"), a field
// name that is not a token ("bad_header_name"), a field value with a control byte other than
// HTAB, CR, LF and NUL included ("bad_header_value"), and the fields the writer sets itself or
// that would change the framing: Host, Content-Length, Transfer-Encoding, Connection
// ("reserved_header"). Nothing a webhook sender put in a header can split the request.
std::string_view request_refusal(const OutgoingRequest& r);

// True when a Connection field's value (RFC 9110 section 7.6.1) lists `name` (any case) among
// its options: the sender meant that field for the connection only, so a proxy drops it. A
// malformed list counts for the options read before the fault.
bool connection_lists(std::string_view connection_value, std::string_view name);

enum class ResponseFraming : uint8_t {
    none,           // 204, 304, a response to HEAD: no body whatever the fields say
    content_length, // content_length bytes (0 included)
    chunked,        // Transfer-Encoding: chunked
    until_close,    // neither: the body ends when the server closes (then keep_alive is false)
};

struct ResponseHead {
    uint16_t status = 0;             // 200-599 (interim 1xx responses are skipped)
    std::string_view reason;         // as sent, may be empty
    uint8_t minor_version = 1;       // HTTP/1.0 -> 0; HTTP/1.1 .. 1.9 -> 1
    std::span<const Header> headers; // into the caller's storage, in order received
    ResponseFraming framing = ResponseFraming::until_close;
    uint64_t content_length = 0; // when framing == content_length
    bool keep_alive = false;     // HTTP/1.1: unless "Connection: close"; HTTP/1.0: only with
                                 // "Connection: keep-alive"; never for a body read until close
    uint8_t interim = 0;         // 1xx responses skipped before this one
};

enum class ResponseEvent : uint8_t {
    need_more, // every byte usable so far is consumed: call again with the rest and more bytes
    head,      // the final head is parsed: head() is valid while the caller keeps its bytes
    data,      // body bytes in Step::data
    done,      // the response is complete; bytes after it are not consumed
    error,     // Step::detail says why; the connection must be closed
};

class ResponseParser {
public:
    // Interim (1xx) responses accepted before the final one.
    static constexpr uint8_t max_interim = 8;

    struct Step {
        size_t consumed = 0; // input bytes used: drop them before the next call
        ResponseEvent event = ResponseEvent::need_more;
        std::string_view data;   // event == data: a view into the input (not kept by the parser)
        std::string_view detail; // event == error: a stable short code ("bare_lf", "obs_fold",
                                 // "bad_status_code", "cl_and_te", "truncated_body" ...)
    };

    // `storage` holds the header fields of a head: at most min(storage.size(),
    // limits.max_headers) of them. limits.header_bytes bounds each head (status line, fields and
    // final CRLF), interim ones included.
    ResponseParser(std::span<Header> storage, const Limits& limits);

    // Ready for the response to the next request. head_request: that request was a HEAD, whose
    // response has no body whatever its fields say.
    void reset(bool head_request = false);

    // Consumes what it can of `in`. While the head is incomplete, `in` must be the bytes the
    // previous call left unconsumed followed by new ones (they may have moved): the head's views
    // point into the input of the call that completes it, and bytes already looked at are not
    // parsed again until a line ends. Interim responses are consumed as they complete (need_more
    // with consumed > 0). In the body, `in` is whatever came next. After done or error every call
    // repeats that answer and consumes nothing, until reset().
    Step feed(std::string_view in);

    // The server closed the connection (end of input): done for a body read until close (and
    // after done); otherwise an error saying where the response was cut: "no_response" (not one
    // byte of it had come: typically a keep-alive connection the server had closed),
    // "truncated_head", "truncated_body".
    Step finish();

    // Meaningful from the head event on, while the bytes of the head are kept.
    const ResponseHead& head() const { return _head; }
    // Body bytes delivered so far (decoded size for chunked).
    uint64_t body_bytes() const { return _body_bytes; }

private:
    enum class State : uint8_t { head, no_body, sized, chunked, until_close, done, failed };

    Step fail(std::string_view detail, size_t consumed = 0);
    Step feed_head(std::string_view in);

    std::span<Header> _storage;
    Limits _limits;
    ResponseHead _head;
    ChunkedDecoder _chunked;
    uint64_t _remaining = 0;  // body bytes still to come (framing content_length)
    uint64_t _body_bytes = 0; // body bytes delivered
    size_t _head_seen = 0;    // bytes of an incomplete head the previous call looked at
    std::string_view _detail; // once failed
    State _state = State::head;
    bool _head_request = false;
    bool _started = false; // a byte of this response (interim ones included) has come
};

// The seconds a Retry-After value asks to wait (RFC 9110 section 10.2.3): delta-seconds
// ("120"), or an HTTP-date (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the obsolete
// RFC 850 and asctime forms a recipient must accept) minus now_unix_s. A date in the past gives
// 0. nullopt for anything else. No upper bound (a delta too large for int64 is INT64_MAX): the
// caller caps it.
std::optional<int64_t> parse_retry_after(std::string_view value, int64_t now_unix_s);

} // namespace portcullis::http
