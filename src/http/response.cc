#include "portcullis/http/response.hh"

#include "writer.hh"

#include <cstdio>
#include <cstring>
#include <ctime>

namespace portcullis::http {

std::string_view status_text(uint16_t status) {
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

size_t write_response(std::span<char> out, const Response& r, std::string_view date) {
    Writer w(out);
    w.put("HTTP/1.1 ");
    w.put_uint(r.status);
    w.put(" ");
    w.put(status_text(r.status));
    w.put("\r\nDate: ");
    w.put(date);
    w.put("\r\n");
    if (!r.body.empty()) {
        w.put("Content-Type: ");
        w.put(r.content_type);
        w.put("\r\n");
    }
    w.put("Content-Length: ");
    w.put_uint(r.body.size());
    w.put("\r\n");
    w.put(r.extra_headers);
    if (r.close) {
        w.put("Connection: close\r\n");
    }
    w.put("\r\n");
    if (!r.head_only) {
        w.put(r.body);
    }
    return w.finish();
}

void DateCache::update(int64_t unix_ns) {
    int64_t second = unix_ns / 1'000'000'000;
    if (second == _second) {
        return;
    }
    _second = second;
    time_t t = static_cast<time_t>(second);
    tm parts{};
    gmtime_r(&t, &parts);
    strftime(_text, sizeof _text, "%a, %d %b %Y %H:%M:%S GMT", &parts);
}

} // namespace portcullis::http
