#include "portcullis/admin/event_reader.hh"

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

// A reader of one JSON object's top-level members: scalars' values as text (strings
// unescaped), nested values skipped. Enough for the control plane's events, safe on anything.
class TopLevelFields {
public:
    explicit TopLevelFields(std::string_view json) : _s(json) {}

    struct Member {
        std::string key;
        std::string value; // a string unescaped, a number or literal as sent; "" for nested
        bool is_string = false;
    };

    // Calls f(member) for each member; false when the text is not one well-formed object.
    template <typename F>
    bool each(F&& f) {
        skip_ws();
        if (!take('{')) {
            return false;
        }
        skip_ws();
        if (take('}')) {
            return at_end();
        }
        for (;;) {
            Member m;
            skip_ws();
            if (!string(m.key)) {
                return false;
            }
            skip_ws();
            if (!take(':')) {
                return false;
            }
            skip_ws();
            if (peek() == '"') {
                m.is_string = true;
                if (!string(m.value)) {
                    return false;
                }
            } else if (peek() == '{' || peek() == '[') {
                if (!skip_nested()) {
                    return false;
                }
            } else if (!literal(m.value)) {
                return false;
            }
            f(m);
            skip_ws();
            if (take(',')) {
                continue;
            }
            if (!take('}')) {
                return false;
            }
            return at_end();
        }
    }

private:
    char peek() const { return _at < _s.size() ? _s[_at] : '\0'; }
    bool take(char c) {
        if (peek() != c || _at >= _s.size()) {
            return false;
        }
        ++_at;
        return true;
    }
    void skip_ws() {
        while (_at < _s.size() &&
               (_s[_at] == ' ' || _s[_at] == '\t' || _s[_at] == '\n' || _s[_at] == '\r')) {
            ++_at;
        }
    }
    bool at_end() {
        skip_ws();
        return _at == _s.size();
    }

    static int hex_digit(char c) {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        if (c >= 'A' && c <= 'F') {
            return c - 'A' + 10;
        }
        return -1;
    }

    // A string into out; \uXXXX of anything but printable ASCII becomes '?' (top shows ASCII).
    bool string(std::string& out) {
        if (!take('"')) {
            return false;
        }
        while (_at < _s.size()) {
            const char c = _s[_at++];
            if (c == '"') {
                return true;
            }
            if (static_cast<unsigned char>(c) < 0x20) {
                return false;
            }
            if (c != '\\') {
                out.push_back(c);
                continue;
            }
            if (_at == _s.size()) {
                return false;
            }
            const char e = _s[_at++];
            switch (e) {
            case '"':
            case '\\':
            case '/':
                out.push_back(e);
                break;
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                out.push_back('?');
                break;
            case 'u': {
                if (_s.size() - _at < 4) {
                    return false;
                }
                int code = 0;
                for (int i = 0; i < 4; ++i) {
                    const int d = hex_digit(_s[_at++]);
                    if (d < 0) {
                        return false;
                    }
                    code = code * 16 + d;
                }
                out.push_back(code >= 0x20 && code < 0x7f ? static_cast<char>(code) : '?');
                break;
            }
            default:
                return false;
            }
        }
        return false;
    }

    // A number, true, false or null: the bytes up to the next delimiter, which must be one of
    // JSON's literal characters.
    bool literal(std::string& out) {
        const size_t start = _at;
        while (_at < _s.size()) {
            const char c = _s[_at];
            const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' ||
                            c == '+' || c == '.' || c == 'E';
            if (!ok) {
                break;
            }
            ++_at;
        }
        out.assign(_s.substr(start, _at - start));
        return !out.empty();
    }

    // An object or array, with what it holds: brackets matched outside strings, their contents
    // not checked further.
    bool skip_nested() {
        std::string open;
        while (_at < _s.size()) {
            const char c = _s[_at];
            if (c == '"') {
                std::string ignored;
                if (!string(ignored)) {
                    return false;
                }
                continue;
            }
            ++_at;
            if (c == '{' || c == '[') {
                open.push_back(c == '{' ? '}' : ']');
            } else if (c == '}' || c == ']') {
                if (open.empty() || open.back() != c) {
                    return false;
                }
                open.pop_back();
                if (open.empty()) {
                    return true;
                }
            }
        }
        return false;
    }

    std::string_view _s;
    size_t _at = 0;
};

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
    EventSummary s;
    std::string ts, route, sink, status, reason, outcome, attempt, failures, cert;
    bool has_type = false;
    const bool ok = TopLevelFields(data).each([&](TopLevelFields::Member& m) {
        // Only the members that say what happened; never headers, peers or job ids.
        const std::array<std::pair<std::string_view, std::string*>, 10> wanted{{
            {"ts", &ts},
            {"route", &route},
            {"sink", &sink},
            {"status", &status},
            {"reason", &reason},
            {"outcome", &outcome},
            {"attempt", &attempt},
            {"consecutive_failures", &failures},
            {"cert", &cert},
            {"type", &s.type},
        }};
        for (const auto& [key, target] : wanted) {
            if (m.key == key) {
                *target = std::move(m.value);
                has_type = key == "type" ? m.is_string : has_type;
            }
        }
    });
    if (!ok || !has_type || s.type.empty()) {
        return std::nullopt;
    }
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
