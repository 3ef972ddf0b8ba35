// Drives the response parser as the HTTP sink does. The input is one response (or several, or
// garbage) as a sequence of reads separated by "\n--MARK--\n" (the h2o corpus convention); the
// input's size picks the options (a response to HEAD, small limits). The same bytes are parsed
// three ways: as those reads, as one read, and cut in two at a point taken from the input; all
// three must come to the same outcome. Checks on every call: nothing consumed beyond the input,
// views inside what was consumed, progress on every head and data step, the repeated answer after
// done or error, body bytes equal to Content-Length when done. A complete head's fields are also
// sent back through write_request and the request parser, which must read them as they were;
// and the input's lines, taken as raw "name:value" fields (CR, LF, NUL and all), are either
// refused by write_request or read back by the request parser as exactly those fields: no
// field value can split the request.
#include "portcullis/http/client.hh"
#include "portcullis/http/parser.hh"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace portcullis::http;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

bool inside(std::string_view v, std::string_view buf) {
    return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

std::vector<std::string_view> split_reads(std::string_view data) {
    constexpr std::string_view mark = "\n--MARK--\n";
    std::vector<std::string_view> reads;
    for (;;) {
        const size_t at = data.find(mark);
        if (at == std::string_view::npos) {
            reads.push_back(data);
            return reads;
        }
        reads.push_back(data.substr(0, at));
        data.remove_prefix(at + mark.size());
    }
}

struct Outcome {
    int heads = 0;
    uint16_t status = 0;
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;
    ResponseFraming framing = ResponseFraming::none;
    uint64_t content_length = 0;
    bool keep_alive = false;
    int interim = 0;
    std::string body;
    bool done = false;
    std::string error;
    std::string rest;

    bool operator==(const Outcome&) const = default;
};

struct Options {
    bool head_request = false;
    Limits limits;
};

// The fields of a head, less those write_request sets itself, go out as a request and come back
// through the server's parser unchanged.
void round_trip(std::span<const Header> fields) {
    std::array<Header, 64> sent;
    size_t n = 0;
    for (const Header& h : fields) {
        if (n == 60) {
            return;
        }
        if (!name_equals(h.name, "host") && !name_equals(h.name, "content-length") &&
            !name_equals(h.name, "transfer-encoding") && !name_equals(h.name, "connection")) {
            sent[n++] = h;
        }
    }
    const OutgoingRequest r{.target = "/hook",
                            .host = "app.internal",
                            .port = 8080,
                            .headers = std::span<const Header>(sent.data(), n),
                            .content_length = 3};
    check(request_refusal(r).empty());
    static std::array<char, 64 * 1024> out;
    const size_t size = write_request(out, r);
    check(size > 0);
    std::array<Header, 64> storage;
    RequestHead head;
    Limits limits;
    limits.header_bytes = static_cast<uint32_t>(out.size());
    const HeadResult back = parse_head({out.data(), size}, 0, limits, storage, head);
    // The request parser refuses a few values the response parser takes (an Expect other than
    // 100-continue, a malformed Host-like field cannot occur: Host is not sent back).
    if (back.error != Error::none) {
        check(back.detail == "bad_expect");
        return;
    }
    check(back.consumed == size);
    check(head.headers.size() == n + 3);
    for (size_t i = 0; i < n; ++i) {
        check(head.headers[i + 1].name == sent[i].name);
        check(head.headers[i + 1].value == sent[i].value);
    }
}

constexpr std::string_view trim(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
        v.remove_prefix(1);
    }
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
        v.remove_suffix(1);
    }
    return v;
}

// Raw fields from the input: each LF-separated line split at its first ':' (a line without one
// is a name with an empty value).
void fuzz_writer(std::string_view input) {
    std::array<Header, 16> fields;
    size_t n = 0;
    while (!input.empty() && n < fields.size()) {
        const size_t lf = std::min(input.find('\n'), input.size());
        const std::string_view line = input.substr(0, lf);
        input.remove_prefix(std::min(lf + 1, input.size()));
        const size_t colon = std::min(line.find(':'), line.size());
        fields[n++] = {line.substr(0, colon), line.substr(std::min(colon + 1, line.size()))};
    }
    const OutgoingRequest r{.target = "/hook",
                            .host = "app.internal",
                            .headers = std::span<const Header>(fields.data(), n),
                            .content_length = 3};
    static std::array<char, 64 * 1024> out;
    const size_t size = write_request(out, r);
    if (!request_refusal(r).empty()) {
        check(size == 0);
        return;
    }
    check(size > 0);
    std::array<Header, 64> storage;
    RequestHead head;
    Limits limits;
    limits.header_bytes = static_cast<uint32_t>(out.size());
    const HeadResult back = parse_head({out.data(), size}, 0, limits, storage, head);
    if (back.error != Error::none) {
        check(back.detail == "bad_expect");
        return;
    }
    check(back.consumed == size);
    check(head.headers.size() == n + 3);
    for (size_t i = 0; i < n; ++i) {
        check(head.headers[i + 1].name == fields[i].name);
        check(head.headers[i + 1].value == trim(fields[i].value));
    }
    check(head.content_length == 3 && head.keep_alive);
}

// Feeds `reads` one after the other as the sink does, then the end of input.
Outcome run(const std::vector<std::string_view>& reads, const Options& opts) {
    std::array<Header, 64> storage;
    ResponseParser p(storage, opts.limits);
    p.reset(opts.head_request);
    Outcome o;
    std::string pending;
    uint64_t consumed_in_body = 0;
    bool in_body = false;
    auto take = [&](const ResponseParser::Step& s, std::string_view in) {
        check(s.consumed <= in.size());
        check(inside(s.data, in.substr(0, s.consumed)));
        if (in_body) {
            consumed_in_body += s.consumed;
        }
        switch (s.event) {
        case ResponseEvent::head: {
            check(s.consumed > 0);
            ++o.heads;
            check(o.heads == 1);
            const ResponseHead& h = p.head();
            const std::string_view used = in.substr(0, s.consumed);
            check(h.status >= 200 && h.status <= 599);
            check(h.minor_version <= 1);
            check(h.interim <= ResponseParser::max_interim);
            check(h.headers.size() <= opts.limits.max_headers);
            check(inside(h.reason, used));
            o.status = h.status;
            o.reason = h.reason;
            for (const Header& f : h.headers) {
                check(!f.name.empty() && inside(f.name, used) && inside(f.value, used));
                o.headers.emplace_back(f.name, f.value);
                if (name_equals(f.name, "retry-after")) {
                    const std::optional<int64_t> wait = parse_retry_after(f.value, 1'780'000'000);
                    check(!wait || *wait >= 0);
                }
            }
            o.framing = h.framing;
            o.content_length = h.content_length;
            o.keep_alive = h.keep_alive;
            o.interim = h.interim;
            check(h.framing != ResponseFraming::until_close || !h.keep_alive);
            round_trip(h.headers);
            in_body = true;
            break;
        }
        case ResponseEvent::data:
            check(!s.data.empty() && s.consumed > 0);
            o.body.append(s.data);
            check(o.framing != ResponseFraming::none);
            check(o.framing != ResponseFraming::content_length ||
                  o.body.size() <= o.content_length);
            break;
        case ResponseEvent::done:
            o.done = true;
            break;
        case ResponseEvent::error:
            check(!s.detail.empty() && s.data.empty());
            o.error = s.detail;
            break;
        case ResponseEvent::need_more:
            break;
        }
        check(p.body_bytes() == o.body.size());
        check(o.body.size() <= consumed_in_body);
    };
    auto finished = [&] { return o.done || !o.error.empty(); };
    for (std::string_view read : reads) {
        pending.append(read);
        while (!finished()) {
            const ResponseParser::Step s = p.feed(pending);
            take(s, pending);
            pending.erase(0, s.consumed);
            if (s.event == ResponseEvent::need_more) {
                break;
            }
        }
    }
    if (!finished()) {
        take(p.finish(), {});
    }
    check(finished());
    const ResponseParser::Step again = p.feed(pending);
    check(again.consumed == 0 && (again.event == ResponseEvent::done) == o.done);
    if (o.done) {
        check(o.heads == 1);
        if (o.framing == ResponseFraming::content_length) {
            check(o.body.size() == o.content_length);
        }
        if (o.framing == ResponseFraming::none) {
            check(o.body.empty());
        }
        if (o.framing == ResponseFraming::until_close) {
            check(pending.empty());
        }
        o.rest = pending;
    }
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    Options opts;
    opts.head_request = size % 8 == 0;
    if (size % 8 == 1) {
        // Small limits too, so that the fuzzer reaches the limit paths cheaply.
        opts.limits.header_bytes = 256;
        opts.limits.max_headers = 4;
    }
    const std::vector<std::string_view> reads = split_reads(input);
    std::string joined;
    for (std::string_view r : reads) {
        joined.append(r);
    }
    fuzz_writer(joined);
    const Outcome by_reads = run(reads, opts);
    const Outcome at_once = run({joined}, opts);
    check(by_reads == at_once);
    if (!joined.empty()) {
        uint64_t h = 1469598103934665603ull;
        for (unsigned char c : input) {
            h = (h ^ c) * 1099511628211ull;
        }
        const size_t cut = h % (joined.size() + 1);
        const std::string_view j = joined;
        check(run({j.substr(0, cut), j.substr(cut)}, opts) == at_once);
    }
    return 0;
}
