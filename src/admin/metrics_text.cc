#include "portcullis/admin/metrics_text.hh"

#include <charconv>
#include <cstdlib>
#include <string>
#include <system_error>

namespace portcullis::admin {

namespace {

bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

std::string_view skip_blanks(std::string_view s) {
    while (!s.empty() && is_blank(s.front())) {
        s.remove_prefix(1);
    }
    return s;
}

bool is_letter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// The longest prefix of s that is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, without colons,
// a label name; empty when s does not start with one.
std::string_view take_name(std::string_view s, bool colons) {
    size_t n = 0;
    while (n < s.size()) {
        const char c = s[n];
        const bool ok = is_letter(c) || (colons && c == ':') || (n > 0 && is_digit(c));
        if (!ok) {
            break;
        }
        ++n;
    }
    return s.substr(0, n);
}

// The token up to the next blank (or the end).
std::string_view take_token(std::string_view s) {
    size_t n = 0;
    while (n < s.size() && !is_blank(s[n])) {
        ++n;
    }
    return s.substr(0, n);
}

} // namespace

// As Go's strconv.ParseFloat reads the text format's values: an optional sign, then a decimal
// or exponent number, Inf, Infinity or NaN (any case).
bool parse_metric_value(std::string_view t, double& out) {
    bool negative = false;
    if (!t.empty() && (t.front() == '+' || t.front() == '-')) {
        negative = t.front() == '-';
        t.remove_prefix(1);
    }
    // from_chars takes a sign of its own and "nan(...)": neither belongs here.
    if (t.empty() || t.front() == '+' || t.front() == '-' ||
        t.find('(') != std::string_view::npos) {
        return false;
    }
    double v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (end != t.data() + t.size()) {
        return false;
    }
    if (ec == std::errc::result_out_of_range) {
        // Still a number, which from_chars leaves unset: ParseFloat (and strtod, in the C
        // locale this program keeps) give Inf past the largest double and 0 or a denormal
        // below the smallest.
        v = std::strtod(std::string(t).c_str(), nullptr);
    } else if (ec != std::errc()) {
        return false;
    }
    out = negative ? -v : v;
    return true;
}

namespace {

bool parse_timestamp(std::string_view t, int64_t& out) {
    const char* begin = t.data();
    if (!t.empty() && t.front() == '+') {
        ++begin;
    }
    if (begin == t.data() + t.size() || *begin == '+') {
        return false;
    }
    const auto [end, ec] = std::from_chars(begin, t.data() + t.size(), out);
    return ec == std::errc() && end == t.data() + t.size();
}

} // namespace

void unescape_label_value(std::string& out, std::string_view raw) {
    for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] != '\\' || i + 1 == raw.size()) {
            out.push_back(raw[i]);
            continue;
        }
        const char e = raw[++i];
        out.push_back(e == 'n' ? '\n' : e);
    }
}

bool MetricLine::label(std::string_view label_name, std::string& out) const {
    for (size_t i = 0; i < label_count; ++i) {
        if (labels[i].name == label_name) {
            out.clear();
            unescape_label_value(out, labels[i].raw_value);
            return true;
        }
    }
    return false;
}

bool MetricLine::label_is(std::string_view label_name, std::string_view value) const {
    for (size_t i = 0; i < label_count; ++i) {
        if (labels[i].name != label_name) {
            continue;
        }
        // Compared escape by escape, without a copy.
        const std::string_view raw = labels[i].raw_value;
        size_t at = 0;
        for (size_t r = 0; r < raw.size(); ++r) {
            char c = raw[r];
            if (c == '\\' && r + 1 < raw.size()) {
                ++r;
                c = raw[r] == 'n' ? '\n' : raw[r];
            }
            if (at == value.size() || value[at] != c) {
                return false;
            }
            ++at;
        }
        return at == value.size();
    }
    return false;
}

bool MetricsTextReader::fail(std::string_view code) {
    _error = code;
    _rest = {};
    return false;
}

bool MetricsTextReader::next(MetricLine& line) {
    while (!_rest.empty() && _error.empty()) {
        const size_t lf = _rest.find('\n');
        std::string_view s = _rest.substr(0, lf);
        _rest.remove_prefix(lf == std::string_view::npos ? _rest.size() : lf + 1);
        ++_line_number;
        if (s.find('\0') != std::string_view::npos || s.find('\r') != std::string_view::npos) {
            return fail("control_byte");
        }
        s = skip_blanks(s);
        if (s.empty()) {
            continue;
        }
        if (s.front() == '#') {
            bool skip = false;
            if (!parse_comment(s, line, skip)) {
                return false;
            }
            if (skip) {
                continue;
            }
            return true;
        }
        return parse_sample(s, line);
    }
    return false;
}

// "# HELP name text", "# TYPE name type"; any other comment is skipped.
bool MetricsTextReader::parse_comment(std::string_view s, MetricLine& line, bool& skip) {
    s.remove_prefix(1);
    s = skip_blanks(s);
    const std::string_view keyword = take_token(s);
    if (keyword != "HELP" && keyword != "TYPE") {
        skip = true;
        return true;
    }
    s = s.substr(keyword.size());
    if (s.empty() || !is_blank(s.front())) {
        return fail("bad_name");
    }
    s = skip_blanks(s);
    const std::string_view name = take_name(s, true);
    if (name.empty()) {
        return fail("bad_name");
    }
    s.remove_prefix(name.size());
    if (!s.empty() && !is_blank(s.front())) {
        return fail("bad_name");
    }
    line = MetricLine{};
    line.name = name;
    if (keyword == "HELP") {
        line.kind = MetricLine::Kind::help;
        // One separator after the name; the docstring keeps the rest as sent.
        line.text = s.empty() ? s : s.substr(1);
        return true;
    }
    line.kind = MetricLine::Kind::type;
    s = skip_blanks(s);
    const std::string_view type = take_token(s);
    if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
        type != "untyped") {
        return fail("bad_type");
    }
    if (!skip_blanks(s.substr(type.size())).empty()) {
        return fail("trailing_bytes");
    }
    line.text = type;
    return true;
}

bool MetricsTextReader::parse_sample(std::string_view s, MetricLine& line) {
    line = MetricLine{};
    line.kind = MetricLine::Kind::sample;
    line.name = take_name(s, true);
    if (line.name.empty()) {
        return fail("bad_name");
    }
    s.remove_prefix(line.name.size());
    if (!s.empty() && !is_blank(s.front()) && s.front() != '{') {
        return fail("bad_name");
    }
    s = skip_blanks(s);
    if (!s.empty() && s.front() == '{') {
        s.remove_prefix(1);
        for (;;) {
            s = skip_blanks(s);
            if (!s.empty() && s.front() == '}') {
                s.remove_prefix(1);
                break;
            }
            const std::string_view name = take_name(s, false);
            if (name.empty()) {
                return fail(s.empty() ? "bad_label" : "bad_label_name");
            }
            s = skip_blanks(s.substr(name.size()));
            if (s.empty() || s.front() != '=') {
                return fail("bad_label");
            }
            s = skip_blanks(s.substr(1));
            if (s.empty() || s.front() != '"') {
                return fail("bad_label");
            }
            s.remove_prefix(1);
            size_t end = 0;
            for (;;) {
                if (end == s.size()) {
                    return fail("unterminated_label_value");
                }
                if (s[end] == '"') {
                    break;
                }
                if (s[end] == '\\') {
                    if (end + 1 == s.size()) {
                        return fail("unterminated_label_value");
                    }
                    const char e = s[end + 1];
                    if (e != '\\' && e != '"' && e != 'n') {
                        return fail("bad_escape");
                    }
                    ++end;
                }
                ++end;
            }
            if (line.label_count == MetricLine::max_labels) {
                return fail("too_many_labels");
            }
            line.labels[line.label_count++] = {name, s.substr(0, end)};
            s = skip_blanks(s.substr(end + 1));
            if (!s.empty() && s.front() == ',') {
                s.remove_prefix(1);
                continue;
            }
            if (s.empty() || s.front() != '}') {
                return fail("bad_label");
            }
            s.remove_prefix(1);
            break;
        }
        s = skip_blanks(s);
    }
    const std::string_view value = take_token(s);
    if (value.empty() || !parse_metric_value(value, line.value)) {
        return fail("bad_value");
    }
    s = skip_blanks(s.substr(value.size()));
    if (!s.empty()) {
        const std::string_view ts = take_token(s);
        if (!parse_timestamp(ts, line.timestamp_ms)) {
            return fail("bad_timestamp");
        }
        line.has_timestamp = true;
        if (!skip_blanks(s.substr(ts.size())).empty()) {
            return fail("trailing_bytes");
        }
    }
    return true;
}

} // namespace portcullis::admin
