// Drives the RESP reply parser as the Redis sink does: replies arrive in pieces, are parsed from
// a buffer that keeps the unconsumed bytes, frame after frame. The input is a sequence of reads
// separated by "\n--MARK--\n" (the h2o corpus convention); its size picks the limits (default,
// or small ones so that the fuzzer reaches the limit paths cheaply). The same bytes are parsed
// three ways: as those reads, as one read, and cut in two at a point taken from the input; all
// three must give the same frames and the same end (need_more, or the same error). Checks on
// every frame: consumed within the input and non-zero, its views inside it, the walk of every
// aggregate giving exactly its count of values, each within the aggregate's bytes. The input,
// cut at its NUL bytes, is also written as a command and must read back as exactly those
// arguments.
#include "portcullis/deliver/resp.hh"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis::deliver;

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

// The value as text, walking every aggregate (depth bounded by the parser's limits).
void render(const resp::Value& v, std::string& out, uint32_t depth) {
    check(depth <= resp::Parser::depth_capacity + 1);
    check(inside(v.text, v.raw));
    out.push_back(char('a' + int(v.type)));
    out.append(v.text);
    out.append(std::to_string(v.integer));
    if (v.is_aggregate()) {
        resp::Elements e(v);
        resp::Value item;
        uint64_t n = 0;
        while (e.next(item)) {
            check(!item.raw.empty() && inside(item.raw, v.raw));
            render(item, out, depth + 1);
            ++n;
        }
        check(n == v.count);
    } else {
        check(v.count == 0);
    }
    out.push_back(';');
}

struct Outcome {
    std::vector<std::string> frames;
    std::string end; // "need_more" or the error's detail
    bool operator==(const Outcome&) const = default;
};

Outcome run(const std::vector<std::string_view>& reads, const resp::Limits& limits) {
    resp::Parser p(limits);
    Outcome o;
    std::string pending;
    for (std::string_view read : reads) {
        pending.append(read);
        for (;;) {
            resp::Value v;
            const resp::Step s = p.parse(pending, v);
            if (s.status == resp::Status::need_more) {
                check(s.consumed == 0);
                break;
            }
            if (s.status == resp::Status::error) {
                check(s.consumed == 0 && !s.detail.empty());
                o.end = s.detail;
                // Stays failed.
                check(p.parse(pending, v).status == resp::Status::error);
                return o;
            }
            check(s.consumed > 0 && s.consumed <= pending.size());
            check(v.raw.data() == pending.data() && v.raw.size() == s.consumed);
            if (limits.max_frame != 0) {
                check(s.consumed <= limits.max_frame);
            }
            std::string text;
            render(v, text, 0);
            o.frames.push_back(std::move(text));
            pending.erase(0, s.consumed);
        }
    }
    o.end = "need_more";
    return o;
}

void round_trip_command(std::string_view input) {
    std::vector<std::string_view> args;
    while (args.size() < 64) {
        const size_t nul = input.find('\0');
        args.push_back(input.substr(0, nul));
        if (nul == std::string_view::npos) {
            break;
        }
        input.remove_prefix(nul + 1);
    }
    std::string out(resp::command_size(args), '\0');
    check(resp::write_command(out.data(), args) == out.data() + out.size());
    resp::Limits limits;
    limits.max_count = 64;
    resp::Parser p(limits);
    resp::Value v;
    const resp::Step s = p.parse(out, v);
    check(s.status == resp::Status::done && s.consumed == out.size());
    check(v.type == resp::Type::array && v.count == args.size());
    resp::Elements e(v);
    resp::Value item;
    for (std::string_view a : args) {
        check(e.next(item));
        check(item.type == resp::Type::bulk && item.text == a);
    }
    check(!e.next(item));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    resp::Limits limits;
    if (size % 4 == 1) {
        limits.max_depth = 3;
        limits.max_count = 4;
        limits.max_bulk = 16;
        limits.max_line = 16;
        limits.max_frame = 64;
    }
    round_trip_command(input);
    const std::vector<std::string_view> reads = split_reads(input);
    std::string joined;
    for (std::string_view r : reads) {
        joined.append(r);
    }
    const Outcome by_reads = run(reads, limits);
    const Outcome at_once = run({joined}, limits);
    check(by_reads == at_once);
    if (!joined.empty()) {
        uint64_t h = 1469598103934665603ull;
        for (unsigned char c : input) {
            h = (h ^ c) * 1099511628211ull;
        }
        const size_t cut = h % (joined.size() + 1);
        const std::string_view j = joined;
        check(run({j.substr(0, cut), j.substr(cut)}, limits) == at_once);
    }
    return 0;
}
