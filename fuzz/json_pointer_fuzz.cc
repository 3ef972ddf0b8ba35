// Request bodies reach json_find on the request path (handshakes, dedup and ordering keys), so
// any body and any pointer the configuration accepts must give an answer that stays inside the
// body and agrees with itself.
//
// The input's first line is the pointer, the rest the document; without a newline the whole
// input is the document and the pointer is "". Checks:
// - a found value lies inside the document and is not empty;
// - read as a document of its own with pointer "", the found value is found again, whole, with
//   the same type; and so is the whole document, if the pointer found anything at all;
// - a found string unescapes into raw.size() - 2 bytes and compares equal to what it unescaped to;
// - a found array's plain strings (json_plain_strings, the control plane's id lists) lie inside
//   it, hold no quote or backslash, and each is found again as a string document of its own;
// - the pointer changes nothing about whether the document is refused, and where, except for a
//   duplicate of a member on its path, which is refused at the duplicate's name (the scan
//   validates the whole document whatever the pointer).
#include "portcullis/base/json_pointer.hh"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace portcullis::base;

namespace {

void check(bool ok) {
    if (!ok) {
        std::abort();
    }
}

bool inside(std::string_view v, std::string_view buf) {
    return v.data() >= buf.data() && v.data() + v.size() <= buf.data() + buf.size();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::string_view pointer;
    std::string_view doc = input;
    if (const size_t nl = input.find('\n'); nl != std::string_view::npos) {
        pointer = input.substr(0, nl);
        doc = input.substr(nl + 1);
    }
    // The document alone in its own allocation, so that ASan sees any read past its end.
    const std::vector<char> doc_copy(doc.begin(), doc.end());
    doc = std::string_view(doc_copy.data(), doc_copy.size());

    const JsonLookup got = json_find(doc, pointer);
    check(json_pointer_valid(pointer) == (got.status != JsonStatus::bad_pointer));
    if (got.status == JsonStatus::bad_pointer) {
        return 0;
    }
    // With pointer "" the answer is about the document alone: it is found or it is refused.
    const JsonLookup whole = json_find(doc, "");
    check(whole.status == JsonStatus::found || whole.status == JsonStatus::malformed ||
          whole.status == JsonStatus::too_deep);
    const bool refused = got.status == JsonStatus::malformed || got.status == JsonStatus::too_deep;
    check(!refused || got.error_offset <= doc.size());
    // A pointer adds one reason to refuse a document: a second copy of a member on its path,
    // reported at the copy's name, before any fault of the document itself.
    const bool duplicate = got.status == JsonStatus::malformed && got.error_offset < doc.size() &&
                           doc[got.error_offset] == '"';
    if (whole.status == JsonStatus::found) {
        check(!refused || duplicate);
        check(whole.value.raw.size() <= doc.size());
    } else {
        check(refused);
        check((got.status == whole.status && got.error_offset == whole.error_offset) ||
              (duplicate && got.error_offset < whole.error_offset));
    }
    if (got.status != JsonStatus::found) {
        return 0;
    }

    const JsonValue& v = got.value;
    check(!v.raw.empty() && inside(v.raw, doc));
    const JsonLookup again = json_find(v.raw, "");
    check(again.status == JsonStatus::found);
    check(again.value.type == v.type && again.value.raw.data() == v.raw.data() &&
          again.value.raw.size() == v.raw.size());

    if (v.type == JsonType::string) {
        // One spare byte that must stay untouched.
        std::vector<char> out(v.raw.size() - 2 + 1, '\x5a');
        const std::optional<size_t> n =
            json_unescape(v.raw, std::span<char>(out.data(), out.size() - 1));
        check(n.has_value() && *n <= v.raw.size() - 2 && out.back() == '\x5a');
        check(json_string_equals(v.raw, std::string_view(out.data(), *n)));
        if (*n > 0) {
            check(!json_unescape(v.raw, std::span<char>(out.data(), *n - 1)).has_value());
        }
    }
    if (v.type == JsonType::array) {
        std::vector<std::string_view> strings;
        if (json_plain_strings(v.raw, strings)) {
            for (std::string_view e : strings) {
                check(inside(e, v.raw));
                check(e.find('"') == std::string_view::npos &&
                      e.find('\\') == std::string_view::npos);
                // Quoted again, the element is a document: a string of exactly those bytes.
                std::string quoted = '"' + std::string(e) + '"';
                const JsonLookup s = json_find(quoted, "");
                check(s.status == JsonStatus::found && s.value.type == JsonType::string &&
                      json_string_equals(s.value.raw, e));
            }
        }
    }
    return 0;
}
