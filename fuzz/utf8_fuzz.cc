// Bodies and header values reach is_utf8 and append_job_json when a consumer pulls a job: the
// validator decides between a JSON string and base64, and a wrong "yes" would hand the consumer
// different bytes than the provider sent.
//
// The input up to its first newline is a header value, the rest the body (without a newline the
// whole input is the body). Checks:
// - is_utf8 agrees with the byte-at-a-time reference decoder (tests/utf8_reference.hh), and with
//   a walk by utf8_sequence_length, on the body and on the header value;
// - the job's JSON is one valid JSON document (json_find with pointer "");
// - the body comes back byte for byte: json_unescape for "utf8", base64_decode for "base64",
//   and the encoding is "utf8" exactly when the body is UTF-8;
// - the header value comes back byte for byte: as is when it is UTF-8, else from its
//   ISO-8859-1 reading.
#include "portcullis/base/encoding.hh"
#include "portcullis/base/json_pointer.hh"
#include "portcullis/base/utf8.hh"
#include "portcullis/queue/job_json.hh"

#include "../tests/utf8_reference.hh"

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

bool walk_is_utf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const size_t n = base::utf8_sequence_length(s, i);
        if (n == 0) {
            return false;
        }
        i += n;
    }
    return true;
}

void check_validator(std::string_view s) {
    const bool fast = base::is_utf8(s);
    check(fast == testing_support::reference_is_utf8(s));
    check(fast == walk_is_utf8(s));
}

std::string string_at(std::string_view doc, std::string_view pointer) {
    const base::JsonLookup got = base::json_find(doc, pointer);
    check(got.status == base::JsonStatus::found && got.value.type == base::JsonType::string);
    std::string out(got.value.raw.size(), '\0');
    const std::optional<size_t> n = base::json_unescape(got.value.raw, out);
    check(n.has_value());
    out.resize(*n);
    return out;
}

// The bytes whose ISO-8859-1 reading `text` (UTF-8 of code points up to U+00FF) is.
std::string latin1_bytes(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<uint8_t>(text[i]);
        if (c < 0x80) {
            out.push_back(static_cast<char>(c));
            continue;
        }
        check((c == 0xc2 || c == 0xc3) && i + 1 < text.size());
        out.push_back(static_cast<char>((c & 0x03) << 6 | (text[++i] & 0x3f)));
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    // In its own allocation, so that ASan sees any read past the end.
    const std::vector<char> input(data, data + size);
    const std::string_view all(input.data(), input.size());
    std::string_view value;
    std::string_view body = all;
    if (const size_t nl = all.find('\n'); nl != std::string_view::npos) {
        value = all.substr(0, nl);
        body = all.substr(nl + 1);
    }
    check_validator(all);
    check_validator(body);
    check_validator(value);

    queue::JobMeta meta;
    meta.route = "fuzz";
    const http::Header headers[] = {{"X-Fuzz", value}};
    const std::vector<uint8_t> bytes = queue::make_job_record(meta, headers, body);
    queue::JobRecord rec;
    size_t record_size = 0;
    check(queue::decode_record(bytes, rec, record_size) == queue::DecodeStatus::ok);

    std::string json;
    queue::append_job_json(json, rec, 1);
    check(base::json_find(json, "").status == base::JsonStatus::found);

    const std::string encoding = string_at(json, "/body_encoding");
    const std::string encoded = string_at(json, "/body");
    check((encoding == "utf8") == base::is_utf8(body));
    if (encoding == "utf8") {
        check(encoded == body);
    } else {
        check(encoding == "base64");
        std::vector<uint8_t> decoded(base::base64_decoded_max_size(encoded.size()));
        const std::optional<size_t> n = base::base64_decode(encoded, decoded);
        check(n.has_value() && *n == body.size());
        check(std::string_view(reinterpret_cast<const char*>(decoded.data()), *n) == body);
    }

    const std::string header = string_at(json, "/headers/x-fuzz");
    check(base::is_utf8(value) ? header == value : latin1_bytes(header) == value);
    return 0;
}
