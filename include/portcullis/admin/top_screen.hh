// `portcullis top`'s screen: a TopView and the client's state laid out as lines of at most
// `width` printable ASCII characters (anything else from the server is shown as '?', so no byte
// it sends can drive the terminal) and at most `height` lines. Each line has a style the
// terminal maps to colours; `--once` prints the text alone. No terminal I/O here.
//
//   ScreenInput in{.view = &view, .url = "http://127.0.0.1:9090", .clock = "20:50:03Z"};
//   for (const ScreenLine& l : render_screen(in, 120, 40)) { draw(l.text, l.style); }
#pragma once

#include "portcullis/admin/top_model.hh"

#include <cstddef>
#include <deque>
#include <string>
#include <vector>

namespace portcullis::admin {

struct ScreenLine {
    enum class Style : uint8_t { plain, title, heading, alert };
    std::string text;
    Style style = Style::plain;
};

struct ScreenInput {
    const TopView* view = nullptr; // null until the first scrape
    std::string url;               // the control plane's base URL
    std::string clock;             // the time, "20:50:03Z"
    std::string status;            // shown under the title when not empty ("disconnected, ...")
    enum class Events : uint8_t {
        live,        // the pane shows `events`
        unavailable, // no pane (the status says why)
    };
    Events events_state = Events::live;
    const std::deque<std::string>* events = nullptr; // summaries, the newest last
    bool keys_hint = false;                          // "q: quit" in the title (the live view)
};

// height 0: as many lines as the content needs (--once).
std::vector<ScreenLine> render_screen(const ScreenInput& in, size_t width, size_t height);

// The lines' text joined with LF, each line ending in one (--once, tests).
std::string screen_text(const std::vector<ScreenLine>& lines);

// Display forms: "12.3" (rates), "1.2GiB", "3m05s" (ages), "850us"/"12ms"/"1.20s".
std::string format_rate_value(double per_s);
std::string format_bytes(double bytes);
std::string format_age(double seconds);
std::string format_latency(double seconds);

} // namespace portcullis::admin
