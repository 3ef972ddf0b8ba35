// Drives the request-head parser and the chunked decoder as the connection layer does. The input
// is a sequence of reads separated by "\n--MARK--\n" (the h2o corpus convention). After every
// read: parse_head on the unconsumed bytes (passing what it already saw), then the body by its
// framing, then the next pipelined request. Checks that answers and views stay inside the input,
// that `scanned` never changes an answer (the same buffer parsed with scanned = 0 agrees), that
// every scan path (AVX-512, AVX2, SSE2, scalar: whichever this CPU has) gives the scalar path's
// answer and views, and that the buffer cut at a point taken from the input is either still
// incomplete or gets the same answer.
#include "portcullis/http/parser.hh"

#include <array>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
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

bool same(const HeadResult& a, const HeadResult& b) {
    return a.consumed == b.consumed && a.error == b.error && a.detail == b.detail;
}

// The same views (same bytes of the same buffer), not just equal text.
bool identical(std::string_view a, std::string_view b) {
    return a.data() == b.data() && a.size() == b.size();
}

// Fields by fields, views by position; the header arrays themselves may differ.
bool same_head(const RequestHead& a, const RequestHead& b) {
    if (!identical(a.method, b.method) || !identical(a.target, b.target) ||
        !identical(a.path, b.path) || !identical(a.query, b.query) || !identical(a.host, b.host) ||
        a.minor_version != b.minor_version || a.framing != b.framing ||
        a.content_length != b.content_length || a.keep_alive != b.keep_alive ||
        a.expect_continue != b.expect_continue || a.headers.size() != b.headers.size()) {
        return false;
    }
    for (size_t i = 0; i < a.headers.size(); ++i) {
        if (!identical(a.headers[i].name, b.headers[i].name) ||
            !identical(a.headers[i].value, b.headers[i].value)) {
            return false;
        }
    }
    return true;
}

std::vector<ScanPath> other_scan_paths() {
    std::vector<ScanPath> paths;
    for (ScanPath path : {ScanPath::sse2, ScanPath::avx2, ScanPath::avx512}) {
        if (scan_path_available(path)) {
            paths.push_back(path);
        }
    }
    return paths;
}

// parse_head on the scalar path, then on every other path: all must agree with it, answer and
// views. Leaves the best path in use.
HeadResult parse_on_every_path(std::string_view buf, size_t scanned, const Limits& limits,
                               std::span<Header> storage, RequestHead& head) {
    static const std::vector<ScanPath> others = other_scan_paths();
    const ScanPath best = scan_path();
    check(use_scan_path(ScanPath::scalar));
    const HeadResult r = parse_head(buf, scanned, limits, storage, head);
    std::array<Header, 64> other_storage;
    for (ScanPath path : others) {
        check(use_scan_path(path));
        RequestHead other;
        const HeadResult o = parse_head(
            buf, scanned, limits, std::span<Header>(other_storage).first(storage.size()), other);
        check(same(o, r));
        if (r.error == Error::none && r.consumed > 0) {
            check(same_head(other, head));
        }
    }
    check(use_scan_path(best));
    return r;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    // Small limits too, so that the fuzzer reaches the 431 paths cheaply.
    Limits limits;
    if (size > 0 && data[0] % 4 == 0) {
        limits.header_bytes = 256;
        limits.max_headers = 4;
    }
    std::array<Header, 64> storage;
    std::array<Header, 64> storage2;
    ChunkedDecoder dec;
    enum class Phase { head, sized_body, chunked_body } phase = Phase::head;
    uint64_t body_left = 0;
    uint64_t chunked_in = 0;
    uint64_t chunked_out = 0;
    std::string pending;
    size_t scanned = 0;

    for (std::string_view read : split_reads(input)) {
        pending.append(read);
        for (;;) {
            if (phase == Phase::head) {
                const std::string_view buf = pending;
                RequestHead head;
                const HeadResult r = parse_on_every_path(buf, scanned, limits, storage, head);
                check(r.consumed <= buf.size());
                check(r.error == Error::none || r.consumed == 0);
                check(r.error == Error::none || !r.detail.empty());
                check(status_of(r.error) >= 200 && !reason_of(r.error).empty());
                if (scanned > 0) {
                    RequestHead again;
                    check(same(parse_head(buf, 0, limits, storage2, again), r));
                }
                if (!buf.empty()) {
                    // A cut taken from the input: the prefix is incomplete, or answers the same.
                    const size_t cut = (size * 7919 + buf.size()) % buf.size();
                    RequestHead prefix_head;
                    const HeadResult prefix =
                        parse_head(buf.substr(0, cut), 0, limits, storage2, prefix_head);
                    check((prefix.error == Error::none && prefix.consumed == 0) || same(prefix, r));
                }
                if (r.error != Error::none) {
                    return 0; // the connection is closed
                }
                if (r.consumed == 0) {
                    scanned = pending.size();
                    break;
                }
                const std::string_view used = buf.substr(0, r.consumed);
                for (std::string_view v :
                     {head.method, head.target, head.path, head.query, head.host}) {
                    check(inside(v, used));
                }
                check(!head.method.empty() && !head.target.empty() && head.target[0] == '/');
                check(head.headers.size() <= limits.max_headers);
                for (const Header& h : head.headers) {
                    check(inside(h.name, used) && inside(h.value, used) && !h.name.empty());
                }
                check(head.minor_version <= 1);
                pending.erase(0, r.consumed);
                scanned = 0;
                if (head.framing == BodyFraming::chunked) {
                    dec.reset();
                    chunked_in = 0;
                    chunked_out = 0;
                    phase = Phase::chunked_body;
                } else if (head.framing == BodyFraming::content_length) {
                    body_left = head.content_length;
                    phase = Phase::sized_body;
                }
            } else if (phase == Phase::sized_body) {
                const size_t take = body_left < pending.size() ? body_left : pending.size();
                pending.erase(0, take);
                body_left -= take;
                if (body_left > 0) {
                    break;
                }
                phase = Phase::head;
            } else {
                const std::string_view buf = pending;
                const ChunkedDecoder::Step s = dec.feed(buf);
                check(s.consumed <= buf.size());
                check(inside(s.data, buf.substr(0, s.consumed)));
                chunked_in += s.consumed;
                chunked_out += s.data.size();
                check(chunked_out <= chunked_in);
                if (s.error != Error::none) {
                    check(!s.detail.empty());
                    return 0;
                }
                pending.erase(0, s.consumed);
                if (s.done) {
                    phase = Phase::head;
                } else if (s.consumed == 0 || pending.empty()) {
                    break;
                }
            }
        }
    }
    return 0;
}
