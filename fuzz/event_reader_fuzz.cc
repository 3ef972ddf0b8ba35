// Drives what `portcullis top` does with the bytes of GET /events: the Server-Sent Events reader
// fed the input whole, byte by byte, and cut at a point taken from the input (all three must
// give the same frames and last id), and the summary of each frame's data, shown on a screen.
// Checks: frames bounded by the reader's limit, identical frames in any split, every screen
// line printable ASCII within the width.
#include "portcullis/admin/event_reader.hh"
#include "portcullis/admin/top_screen.hh"

#include <cstdint>
#include <cstdlib>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis::admin;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

struct Outcome {
    std::vector<EventFrame> frames;
    std::string last_id;
    uint64_t dropped = 0;
};

bool same(const Outcome& a, const Outcome& b) {
    if (a.frames.size() != b.frames.size() || a.last_id != b.last_id || a.dropped != b.dropped) {
        return false;
    }
    for (size_t i = 0; i < a.frames.size(); ++i) {
        if (a.frames[i].id != b.frames[i].id || a.frames[i].event != b.frames[i].event ||
            a.frames[i].data != b.frames[i].data) {
            return false;
        }
    }
    return true;
}

constexpr size_t limit = 512; // small, so that the fuzzer reaches the oversized paths

Outcome run(std::string_view input, size_t piece) {
    EventStreamReader r(limit);
    Outcome o;
    for (size_t at = 0; at < input.size(); at += piece) {
        r.feed(input.substr(at, piece), o.frames);
    }
    o.last_id = r.last_id();
    o.dropped = r.frames_dropped();
    return o;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const Outcome whole = run(input, input.size() + 1);
    check(same(whole, run(input, 1)));
    if (!input.empty()) {
        const size_t cut = (static_cast<size_t>(data[0]) * 31 + size) % size + 1;
        EventStreamReader r(limit);
        Outcome o;
        r.feed(input.substr(0, cut), o.frames);
        r.feed(input.substr(cut), o.frames);
        o.last_id = r.last_id();
        o.dropped = r.frames_dropped();
        check(same(whole, o));
    }
    std::deque<std::string> pane;
    for (const EventFrame& f : whole.frames) {
        // The bound counts the bytes received ("message", the default event name, is not).
        check(f.data.size() <= limit && f.event.size() <= limit);
        check(!f.event.empty());
        if (auto s = summarize_event(f.data)) {
            check(!s->type.empty());
            pane.push_back(s->line());
        }
    }
    // The data as a whole, too: the summary reads any bytes.
    if (auto s = summarize_event(input)) {
        pane.push_back(s->line());
    }
    TopView v;
    ScreenInput in;
    in.view = &v;
    in.events = &pane;
    const size_t width = 1 + size % 150;
    for (const ScreenLine& l : render_screen(in, width, 0)) {
        check(l.text.size() <= width);
        for (char c : l.text) {
            check(c >= 0x20 && c <= 0x7e);
        }
    }
    return 0;
}
