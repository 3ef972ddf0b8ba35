#include "portcullis/queue/job_json.hh"

#include "portcullis/base/encoding.hh"
#include "portcullis/base/json.hh"
#include "portcullis/base/time.hh"
#include "portcullis/base/utf8.hh"
#include "portcullis/http/header.hh"

#include <arpa/inet.h>

#include <optional>
#include <string_view>

namespace portcullis::queue {

namespace {

bool names_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    for (size_t i = 0; i < a.size(); ++i) {
        if (http::ascii_lower(a[i]) != http::ascii_lower(b[i])) {
            return false;
        }
    }
    return true;
}

// A header value inside quotes: as is when it is UTF-8, else its ISO-8859-1 reading (see the
// header). The escaper alone would keep the well-formed sequences of a mixed value and escape
// the rest, which no consumer could turn back into the bytes.
void append_header_value(std::string& out, std::string_view value) {
    base::StringBuffer buf(out);
    if (base::is_utf8(value)) {
        base::append_json_escaped(buf, value);
        return;
    }
    static constexpr char hex_digits[] = "0123456789abcdef";
    size_t run = 0; // start of the pending ASCII run, escaped as a whole
    for (size_t i = 0; i < value.size(); ++i) {
        const auto c = static_cast<uint8_t>(value[i]);
        if (c < 0x80) {
            continue;
        }
        base::append_json_escaped(buf, value.substr(run, i - run));
        const char esc[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xf]};
        out.append(esc, sizeof esc);
        run = i + 1;
    }
    base::append_json_escaped(buf, value.substr(run));
}

} // namespace

// Names are lowercased as they are written; a repeated name is written once, at its first
// appearance, with the values of all its lines. Quadratic in the header count, which the HTTP
// layer caps (limits.headers, at most 1000), in exchange for no allocation and no reordering.
void append_headers_json(std::string& out, const JobRecord& record) {
    out.push_back('{');
    uint16_t index = 0;
    bool first_member = true;
    record.for_each_header([&](std::string_view name, std::string_view value) {
        const uint16_t mine = index++;
        bool seen_before = false;
        uint16_t k = 0;
        record.for_each_header([&](std::string_view other, std::string_view) {
            seen_before = seen_before || (k++ < mine && names_equal(other, name));
        });
        if (seen_before) {
            return;
        }
        if (!first_member) {
            out.push_back(',');
        }
        first_member = false;
        out.push_back('"');
        const size_t name_at = out.size();
        base::StringBuffer buf(out);
        base::append_json_escaped(buf, name);
        for (size_t i = name_at; i < out.size(); ++i) {
            out[i] = http::ascii_lower(out[i]);
        }
        out += "\":\"";
        append_header_value(out, value);
        k = 0;
        record.for_each_header([&](std::string_view other, std::string_view other_value) {
            if (k++ > mine && names_equal(other, name)) {
                out += ", ";
                append_header_value(out, other_value);
            }
        });
        out.push_back('"');
    });
    out.push_back('}');
}

namespace {

// The writer covers the scalar members; headers and body go straight into out, because they are
// escaped piece by piece (joined values) or encoded in place (base64).
void append_job(std::string& out, const JobRecord& record, std::optional<uint32_t> attempt) {
    base::StringBuffer buf(out);
    base::JsonWriter w(buf);
    char id[job_id_text_size];
    record.id.format(id);
    char when[24];
    char ip[INET6_ADDRSTRLEN];
    w.begin_object();
    w.key("id").string(std::string_view(id, sizeof id));
    w.key("route").string(record.route);
    w.key("received_at").string(base::format_rfc3339(record.received_at_ns, when));
    if (attempt) {
        w.key("attempt").number(*attempt);
    }
    w.key("source_ip").string(record.peer.format_ip(ip));
    if (!record.source.empty()) {
        w.key("enqueued_by").string(record.source);
    }
    out.push_back(',');
    out += "\"headers\":";
    append_headers_json(out, record);

    if (base::is_utf8(record.body)) {
        out += ",\"body\":\"";
        base::append_json_escaped(buf, record.body);
        out += "\",\"body_encoding\":\"utf8\"}";
        return;
    }
    out += ",\"body\":\"";
    // Encoded in place: a 1 MiB body is not copied into a temporary string first.
    const size_t at = out.size();
    out.resize(at + base::base64_encoded_size(record.body.size()));
    base::base64_encode(base::as_bytes(record.body), out.data() + at);
    out += "\",\"body_encoding\":\"base64\"}";
}

} // namespace

void append_job_json(std::string& out, const JobRecord& record, uint32_t attempt) {
    append_job(out, record, attempt);
}

void append_job_json(std::string& out, const JobRecord& record) {
    append_job(out, record, std::nullopt);
}

} // namespace portcullis::queue
