// A reader of the Prometheus text format 0.0.4 (what GET /metrics answers), for `portcullis
// top`: one line at a time, zero-copy (every view points into the caller's text), no
// allocation. The text comes from the network, so anything malformed is an error with a line
// number and a short code, never a crash.
//
//   MetricsTextReader r(body);
//   MetricLine line;
//   while (r.next(line)) {
//       if (line.kind != MetricLine::Kind::sample) { continue; }
//       std::string route;
//       if (line.label("route", route) && line.name == "portcullis_requests_total") { ... }
//   }
//   if (!r.error().empty()) { print(r.line_number(), r.error()); }
//
// Accepted: `# HELP name text`, `# TYPE name counter|gauge|histogram|summary|untyped`, other
// comments (ignored), empty lines, and samples `name{label="value",...} value [timestamp]` with
// spaces or tabs between the parts, an optional trailing comma in the label set, label values
// escaped with \\, \" and \n, values as Go's ParseFloat reads them in this format (decimal or
// exponent, NaN, +Inf, -Inf, Inf), an optional integer timestamp, and a last line without a
// line feed. Refused, with the code error() gives: a bad metric or label name ("bad_name",
// "bad_label_name"), a missing '=' or quote ("bad_label"), an escape other than those three
// ("bad_escape"), a label value cut by the end of the line ("unterminated_label_value"), more
// than max_labels labels ("too_many_labels"), a bad value or timestamp ("bad_value",
// "bad_timestamp"), bytes after them ("trailing_bytes"), a TYPE line with an unknown type
// ("bad_type"), and a NUL or CR anywhere ("control_byte").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace portcullis::admin {

struct MetricLine {
    enum class Kind : uint8_t { help, type, sample };
    static constexpr size_t max_labels = 16;

    struct Label {
        std::string_view name;
        std::string_view raw_value; // between the quotes, escapes as sent
    };

    Kind kind = Kind::sample;
    std::string_view name; // the metric name (of the sample, or the family a HELP/TYPE names)
    std::string_view text; // help: the docstring as sent (escaped); type: the type name
    std::array<Label, max_labels> labels{};
    size_t label_count = 0;
    double value = 0;
    bool has_timestamp = false;
    int64_t timestamp_ms = 0;

    // The unescaped value of label `name` into out; false when the sample has no such label.
    bool label(std::string_view label_name, std::string& out) const;
    // True when label `name` is present and its unescaped value equals `value`.
    bool label_is(std::string_view label_name, std::string_view value) const;
};

// A sample value (or a histogram's `le`) as the format writes it: "12", "-1.5e-3", "+Inf",
// "NaN". False for anything else.
bool parse_metric_value(std::string_view text, double& out);

// Appends the unescaped form of a label value as sent (\\ -> \, \" -> ", \n -> LF). The
// reader has checked the escapes of values it returned.
void unescape_label_value(std::string& out, std::string_view raw);

class MetricsTextReader {
public:
    explicit MetricsTextReader(std::string_view text) : _rest(text) {}

    // The next HELP, TYPE or sample line into `line`; false at the end of the text or at the
    // first malformed line (then error() is not empty, and every later call returns false).
    bool next(MetricLine& line);

    std::string_view error() const { return _error; }
    // The 1-based number of the line last read (the malformed one after an error).
    size_t line_number() const { return _line_number; }

private:
    bool fail(std::string_view code);
    bool parse_sample(std::string_view s, MetricLine& line);
    bool parse_comment(std::string_view s, MetricLine& line, bool& skip);

    std::string_view _rest;
    std::string_view _error;
    size_t _line_number = 0;
};

} // namespace portcullis::admin
