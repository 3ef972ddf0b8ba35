// The client side of GET /events, for `portcullis top`: Server-Sent Events framing (the WHATWG
// "event stream interpretation": lines end in LF, CR or CRLF; `data`, `event`, `id` fields;
// comments; a blank line ends a frame) and a one-line summary of an event's JSON. Both read
// bytes from the network: anything malformed is dropped and counted, never a crash, and a frame
// is bounded so that a stream without blank lines cannot grow memory.
//
//   EventStreamReader r;
//   std::vector<EventFrame> frames;
//   r.feed(bytes, frames);                       // any split of the stream gives the same frames
//   for (auto& f : frames) {
//       if (auto s = summarize_event(f.data)) { pane.push(s->line()); }
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portcullis::admin {

struct EventFrame {
    std::string id;    // the frame's `id` field ("" when it had none)
    std::string event; // the `event` field ("message" when it had none)
    std::string data;  // the `data` lines joined with LF
};

class EventStreamReader {
public:
    // A frame (its fields' bytes together) longer than this is dropped whole and counted.
    static constexpr size_t default_max_frame = 64 * 1024;

    explicit EventStreamReader(size_t max_frame = default_max_frame) : _max_frame(max_frame) {}

    // Appends the frames that `bytes` completes to out.
    void feed(std::string_view bytes, std::vector<EventFrame>& out);

    // A new connection: what was partly read of the last one is dropped; last_id() is kept
    // (the reconnect's Last-Event-ID).
    void resume();

    // The last `id` received (the stream's Last-Event-ID for a reconnect); "" before any.
    const std::string& last_id() const { return _last_id; }
    uint64_t frames_dropped() const { return _dropped; }

private:
    void line_done(std::vector<EventFrame>& out);

    size_t _max_frame;
    std::string _line; // the current line, up to _max_frame bytes
    bool _line_too_long = false;
    bool _after_cr = false;  // the last byte was a CR: a LF right after it ends nothing
    bool _first_byte = true; // a UTF-8 BOM at the very start is skipped
    size_t _bom_seen = 0;
    EventFrame _frame;
    bool _has_data = false;
    bool _frame_too_long = false;
    std::string _last_id;
    uint64_t _dropped = 0;
};

// What `top` shows of one event: its time (HH:MM:SS of `ts`, UTC), type, and the fields that
// say what happened to what (route, sink, status, reason, outcome, attempt), never a body, a
// header or a job id.
struct EventSummary {
    std::string time;
    std::string type;
    std::string subject; // the route, or the sink of a sink.* event
    std::string detail;  // "401 signature_mismatch", "sink out attempt 2", ...

    // "20:49:57 webhook.rejected github 401 signature_mismatch"
    std::string line() const;
};

// nullopt when `data` is not a JSON object with a string "type".
std::optional<EventSummary> summarize_event(std::string_view data);

} // namespace portcullis::admin
