// GET /events takes outside bytes three ways: the `?types=` list and the Last-Event-ID header of
// a subscriber, and the headers of a refused webhook, which its webhook.rejected event carries
// (the allow-listed ones, cut to fit the event's fixed slot). Checks:
// - parse_types never crashes; a list it takes names at least one type, one it refuses says why;
// - parse_last_event_id takes exactly 1 to 19 decimal digits, and reads their value;
// - the headers' JSON fits the event's slot and stays one JSON object, and the SSE frame built
//   from the event is "id:", "event:", "data:" lines whose data is one JSON object that holds
//   the type and no line break (a frame a subscriber can always parse).
//
// Input: line 1 the types list, line 2 the Last-Event-ID, the rest "name: value" header lines.
#include "portcullis/admin/event_stream.hh"
#include "portcullis/base/event.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/http/header_policy.hh"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis;

namespace {

// The failed check's line, for the crash report.
void check(bool ok, int line = __builtin_LINE()) {
    if (!ok) {
        std::fprintf(stderr, "event_stream_fuzz: check at line %d failed\n", line);
        std::abort();
    }
}

std::string_view next_line(std::string_view& rest) {
    const size_t nl = rest.find('\n');
    const std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    return line;
}

void check_last_event_id(std::string_view v) {
    const std::optional<uint64_t> id = admin::parse_last_event_id(v);
    bool digits = !v.empty() && v.size() <= 19;
    uint64_t value = 0;
    for (char c : v) {
        digits = digits && c >= '0' && c <= '9';
        value = value * 10 + static_cast<uint64_t>(c - '0'); // 19 digits never overflow
    }
    check(id.has_value() == digits);
    check(!id || *id == value);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // In its own allocation, so that ASan sees any read past the end.
    const std::vector<char> input(data, data + size);
    std::string_view rest(input.data(), input.size());
    const std::string_view types = next_line(rest);
    const std::string_view last_id = next_line(rest);

    std::string why;
    const std::optional<admin::TypeMask> mask = admin::parse_types(types, &why);
    check(mask ? (*mask != 0 && (*mask & ~admin::all_types) == 0) : !why.empty());
    check_last_event_id(last_id);

    std::vector<http::Header> headers;
    while (!rest.empty() && headers.size() < 64) {
        const std::string_view line = next_line(rest);
        const size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
            continue;
        }
        std::string_view value = line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') {
            value.remove_prefix(1);
        }
        headers.push_back({line.substr(0, colon), value});
    }
    base::Event e = base::Event::make(base::EventType::webhook_rejected, 1'700'000'000'000'000'000);
    e.route = 0;
    e.status = 401;
    e.set_id("01m96jvc4k0003rwpxr2jzba20");
    const http::StoredFields policy{};
    const size_t n = http::json_headers(e.text, headers, policy);
    check(n <= e.text.size());
    e.text_size = static_cast<uint16_t>(n);
    if (n != 0) {
        const base::JsonLookup whole = base::json_find(e.text_view(), "");
        check(whole.status == base::JsonStatus::found &&
              whole.value.type == base::JsonType::object);
    }

    static const config::RouteSlots* slots = [] {
        auto* r = new config::RouteSlots; // NOLINT(cppcoreguidelines-owning-memory): for the run
        r->assign("github");
        return r;
    }();
    admin::EventNames names;
    names.routes = slots;
    std::string frame;
    admin::format_event(frame, 7, e, names);
    std::string_view f = frame;
    check(next_line(f) == "id: 7");
    check(next_line(f) == "event: webhook.rejected");
    const std::string_view data_line = next_line(f);
    check(data_line.starts_with("data: "));
    check(f == "\n"); // the frame ends with an empty line
    const std::string_view json = data_line.substr(6);
    const base::JsonLookup type = base::json_find(json, "/type");
    check(type.status == base::JsonStatus::found &&
          base::json_string_equals(type.value.raw, "webhook.rejected"));
    check(base::json_find(json, "").status == base::JsonStatus::found);
    return 0;
}
