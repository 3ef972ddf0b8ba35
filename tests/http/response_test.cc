#include "portcullis/http/response.hh"

#include <gtest/gtest.h>

#include <string>

using namespace portcullis::http;

TEST(WriteResponse, FormatsHeadAndBody) {
    char out[256];
    Response r;
    r.status = 202;
    r.body = R"({"id":"x","status":"queued"})";
    size_t n = write_response(out, r, "Sun, 22 Nov 2026 13:18:00 GMT");
    EXPECT_EQ(std::string(out, n), "HTTP/1.1 202 Accepted\r\n"
                                   "Date: Sun, 22 Nov 2026 13:18:00 GMT\r\n"
                                   "Content-Type: application/json\r\n"
                                   "Content-Length: 28\r\n"
                                   "\r\n"
                                   R"({"id":"x","status":"queued"})");
}

TEST(WriteResponse, ExtraHeadersCloseAndHead) {
    char out[256];
    Response r;
    r.status = 405;
    r.body = "{}";
    r.extra_headers = "Allow: POST\r\n";
    r.close = true;
    r.head_only = true;
    std::string got(out, write_response(out, r, "D"));
    EXPECT_EQ(got, "HTTP/1.1 405 Method Not Allowed\r\nDate: D\r\nContent-Type: "
                   "application/json\r\nContent-Length: 2\r\nAllow: POST\r\nConnection: "
                   "close\r\n\r\n");
}

TEST(WriteResponse, ReturnsZeroWhenItDoesNotFit) {
    char out[40];
    Response r;
    r.body = "a body that does not fit in forty bytes with its head";
    EXPECT_EQ(write_response(out, r, "Sun, 22 Nov 2026 13:18:00 GMT"), 0u);
}

TEST(DateCache, FormatsImfFixdate) {
    DateCache d;
    d.update(1'795'353'480'000'000'000); // 2026-11-22T13:18:00Z
    EXPECT_EQ(d.view(), "Sun, 22 Nov 2026 13:18:00 GMT");
    d.update(0);
    EXPECT_EQ(d.view(), "Thu, 01 Jan 1970 00:00:00 GMT");
}
