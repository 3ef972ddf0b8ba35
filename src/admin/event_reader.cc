#include "portcullis/admin/event_reader.hh"

#include "portcullis/base/json_pointer.hh"

#include <array>

namespace portcullis::admin {

namespace {

constexpr std::string_view bom = "\xEF\xBB\xBF";

} // namespace

void EventStreamReader::feed(std::string_view bytes, std::vector<EventFrame>& out) {
    for (const char c : bytes) {
        // The stream may start with a BOM (once), which is not part of the first field name.
        if (_first_byte) {
            if (_bom_seen < bom.size() && c == bom[_bom_seen]) {
                ++_bom_seen;
                if (_bom_seen == bom.size()) {
                    _first_byte = false;
                }
                continue;
            }
            _first_byte = false;
            // A partial BOM was bytes of the first line after all.
            _line.append(bom.substr(0, _bom_seen));
        }
        if (c == '\n' && _after_cr) {
            _after_cr = false;
            continue;
        }
        _after_cr = c == '\r';
        if (c == '\n' || c == '\r') {
            line_done(out);
            continue;
        }
        if (_line.size() + _frame.data.size() + _frame.event.size() >= _max_frame) {
            _line_too_long = true;
            continue;
        }
        _line.push_back(c);
    }
}

void EventStreamReader::resume() {
    _line.clear();
    _line_too_long = false;
    _after_cr = false;
    _first_byte = true;
    _bom_seen = 0;
    _frame = EventFrame{};
    _has_data = false;
    _frame_too_long = false;
}

void EventStreamReader::line_done(std::vector<EventFrame>& out) {
    if (_line_too_long) {
        _frame_too_long = true;
        _line_too_long = false;
        _line.clear();
        return;
    }
    if (_line.empty()) {
        // A blank line dispatches the frame (one without data is no event).
        if (_frame_too_long) {
            ++_dropped;
        } else if (_has_data) {
            if (_frame.event.empty()) {
                _frame.event = "message";
            }
            _frame.id = _last_id;
            out.push_back(std::move(_frame));
        }
        _frame = EventFrame{};
        _has_data = false;
        _frame_too_long = false;
        return;
    }
    const std::string_view line = _line;
    if (line.front() == ':') {
        _line.clear();
        return;
    }
    const size_t colon = line.find(':');
    const std::string_view field = line.substr(0, colon);
    std::string_view value;
    if (colon != std::string_view::npos) {
        value = line.substr(colon + 1);
        if (!value.empty() && value.front() == ' ') {
            value.remove_prefix(1);
        }
    }
    if (field == "data") {
        if (_has_data) {
            _frame.data.push_back('\n');
        }
        _frame.data.append(value);
        _has_data = true;
    } else if (field == "event") {
        _frame.event.assign(value);
    } else if (field == "id") {
        // An id with a NUL is ignored (WHATWG); the id stays for the frames that follow.
        if (value.find('\0') == std::string_view::npos) {
            _last_id.assign(value);
        }
    }
    // retry and unknown fields: nothing for top.
    _line.clear();
}

namespace {

// A top-level member's value as top shows it: a string decoded, with anything but printable
// ASCII as '?' (top prints ASCII only); a number or literal as sent; "" when absent, nested or
// not readable.
std::string member(std::string_view json, std::string_view pointer, bool* is_string = nullptr) {
    const base::JsonLookup got = base::json_find(json, pointer);
    if (got.status != base::JsonStatus::found || got.value.type == base::JsonType::object ||
        got.value.type == base::JsonType::array) {
        return "";
    }
    if (got.value.type != base::JsonType::string) {
        return std::string(got.value.raw);
    }
    std::string out(got.value.raw.size(), '\0');
    const std::optional<size_t> n = base::json_unescape(got.value.raw, out);
    out.resize(n.value_or(0));
    for (char& c : out) {
        c = c >= 0x20 && c < 0x7f ? c : '?';
    }
    if (is_string != nullptr) {
        *is_string = n.has_value();
    }
    return out;
}

} // namespace

std::string EventSummary::line() const {
    std::string out = time;
    for (const std::string* part : {&type, &subject, &detail}) {
        if (part->empty()) {
            continue;
        }
        if (!out.empty()) {
            out.push_back(' ');
        }
        out += *part;
    }
    return out;
}

std::optional<EventSummary> summarize_event(std::string_view data) {
    // The whole frame's data must be one JSON object; only the members that say what happened
    // are read (never headers, peers or job ids).
    const base::JsonLookup whole = base::json_find(data, "");
    if (whole.status != base::JsonStatus::found || whole.value.type != base::JsonType::object) {
        return std::nullopt;
    }
    EventSummary s;
    bool type_is_string = false;
    s.type = member(data, "/type", &type_is_string);
    if (!type_is_string || s.type.empty()) {
        return std::nullopt;
    }
    const std::string ts = member(data, "/ts");
    const std::string route = member(data, "/route");
    const std::string sink = member(data, "/sink");
    const std::string status = member(data, "/status");
    const std::string reason = member(data, "/reason");
    const std::string outcome = member(data, "/outcome");
    const std::string attempt = member(data, "/attempt");
    const std::string failures = member(data, "/consecutive_failures");
    const std::string cert = member(data, "/cert");
    // "2026-12-06T20:49:57.011Z" -> "20:49:57".
    if (ts.size() >= 19 && ts[10] == 'T') {
        s.time = ts.substr(11, 8);
    }
    s.subject = route.empty() ? sink : route;
    std::string detail;
    auto add = [&](std::string_view label, const std::string& value) {
        if (value.empty()) {
            return;
        }
        if (!detail.empty()) {
            detail.push_back(' ');
        }
        detail += label;
        detail += value;
    };
    add("", status);
    add("", reason);
    add("", outcome);
    if (!route.empty()) {
        add("sink ", sink);
    }
    add("attempt ", attempt);
    add("failures ", failures);
    add("", cert);
    s.detail = std::move(detail);
    return s;
}

} // namespace portcullis::admin
