// Response writer: one complete final HTTP/1.1 response, head and body, into a caller buffer
// (the interim 100 Continue is a constant of the connection layer).
//
//   char out[512];
//   size_t n = write_response(out, {.status = 202, .body = json}, date.view());
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace portcullis::http {

struct Response {
    uint16_t status = 200;
    std::string_view body;
    std::string_view content_type = "application/json";
    std::string_view extra_headers; // preformatted lines, each ending in CRLF ("Allow: POST\r\n")
    bool close = false;             // adds "Connection: close"
    bool head_only = false;         // HEAD: Content-Length of the body, no body bytes
};

std::string_view status_text(uint16_t status);

// Returns the bytes written, or 0 when the response does not fit in out.
size_t write_response(std::span<char> out, const Response& r, std::string_view date);

// The IMF-fixdate of a Unix time ("Sun, 22 Nov 2026 13:18:00 GMT"), refreshed once a second by
// each shard.
class DateCache {
public:
    std::string_view view() const { return {_text, 29}; }
    // Cheap when the second did not change.
    void update(int64_t unix_ns);

private:
    int64_t _second = -1;
    char _text[32] = {};
};

} // namespace portcullis::http
