// The NATS sink parses every byte a NATS server (or whatever answers on its port) sends: INFO,
// MSG and HMSG with their header blocks and JetStream acknowledgements, PING, PONG, +OK, -ERR.
// The input is the server's byte stream. The first byte picks small limits (so the fuzzer
// reaches the limit paths cheaply) or the sink's; the rest is parsed three ways: all at once,
// cut in two at a point taken from the input, and in reads of a few bytes; all three must give
// the same frames. Checks on every frame: progress, nothing consumed beyond the input, views
// inside what was consumed, sizes within the limits, an HMSG's header block readable by
// parse_header_status; INFO goes through parse_info and a message's payload through
// parse_pub_ack (which must not crash, and whose views stay inside the payload).
#include "portcullis/deliver/nats_protocol.hh"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis::deliver::nats;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

bool inside(std::string_view v, std::string_view buf) {
    return v.empty() || (v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size());
}

std::string describe(const Frame& f) {
    std::string s(1, char('0' + int(f.op)));
    for (std::string_view v : {f.text, f.subject, f.reply, f.headers, f.payload}) {
        s += std::to_string(v.size()) + ":" + std::string(v);
    }
    return s + std::to_string(f.sid);
}

std::vector<std::string> run(const std::vector<std::string_view>& reads, const Limits& limits) {
    Parser p(limits);
    std::string buf;
    std::vector<std::string> out;
    for (std::string_view r : reads) {
        buf.append(r);
        for (;;) {
            const Frame f = p.feed(buf);
            if (f.op == Op::need_more) {
                check(f.consumed == 0);
                break;
            }
            const std::string_view used = std::string_view(buf).substr(0, f.consumed);
            if (f.op == Op::error) {
                check(f.consumed == 0 && !f.text.empty());
                out.push_back(describe(f));
                // Sticky.
                check(p.feed(buf).op == Op::error);
                return out;
            }
            check(f.consumed > 0 && f.consumed <= buf.size());
            for (std::string_view v : {f.text, f.subject, f.reply, f.headers, f.payload}) {
                check(inside(v, used));
            }
            if (f.op == Op::info) {
                check(f.consumed <= limits.max_info);
                ServerInfo info;
                std::string why;
                (void)parse_info(f.text, info, why);
            } else {
                check(f.consumed <= limits.max_control + limits.max_message + 2);
            }
            if (f.op == Op::msg) {
                check(f.headers.size() + f.payload.size() <= limits.max_message);
                if (!f.headers.empty()) {
                    check(parse_header_status(f.headers).valid);
                }
                const PubAck a = parse_pub_ack(f.payload);
                check(inside(a.stream, f.payload) && inside(a.description, f.payload));
                // The one-pass form reads as the general JSON reader does.
                const PubAck b = parse_pub_ack_json(f.payload);
                check(a.kind == b.kind && a.stream == b.stream && a.seq == b.seq &&
                      a.duplicate == b.duplicate && a.code == b.code &&
                      a.description == b.description);
            }
            out.push_back(describe(f));
            buf.erase(0, f.consumed);
        }
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) {
        return 0;
    }
    Limits limits;
    if (data[0] % 2 == 1) {
        limits = {.max_control = 64, .max_info = 128, .max_message = 32};
    }
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    const std::vector<std::string> whole = run({input}, limits);
    const size_t cut = input.empty() ? 0 : data[0] % (input.size() + 1);
    check(run({input.substr(0, cut), input.substr(cut)}, limits) == whole);
    std::vector<std::string_view> pieces;
    const size_t step = 1 + data[0] % 7;
    for (size_t at = 0; at < input.size(); at += step) {
        pieces.push_back(input.substr(at, step));
    }
    check(run(pieces, limits) == whole);
    return 0;
}
