#include "portcullis/admin/request.hh"

#include "portcullis/config/units.hh"

#include <charconv>

namespace portcullis::admin {

namespace {

// Whether the field is there at all: an empty body (a nack without one) has no fields, and a
// body that is not JSON has only bad ones.
bool present(std::string_view doc, std::string_view pointer) {
    return !doc.empty() && base::json_find(doc, pointer).status != base::JsonStatus::not_found;
}

} // namespace

std::optional<std::string_view> json_plain(std::string_view doc, std::string_view pointer,
                                           base::JsonType type) {
    base::JsonLookup l = base::json_find(doc, pointer);
    if (l.status != base::JsonStatus::found || l.value.type != type) {
        return std::nullopt;
    }
    std::string_view raw = l.value.raw;
    if (type == base::JsonType::string) {
        raw = raw.substr(1, raw.size() - 2);
        if (raw.find('\\') != std::string_view::npos) {
            return std::nullopt;
        }
    }
    return raw;
}

Field integer_field(std::string_view doc, std::string_view pointer, int64_t min, int64_t max,
                    int64_t& out) {
    if (!present(doc, pointer)) {
        return Field::absent;
    }
    std::optional<std::string_view> text = json_plain(doc, pointer, base::JsonType::number);
    // json_find has checked the RFC 8259 grammar: what is not an integer has a '.' or an
    // exponent. from_chars then refuses what does not fit in 64 bits.
    if (!text || text->find_first_of(".eE") != std::string_view::npos) {
        return Field::bad;
    }
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
    if (ec != std::errc() || end != text->data() + text->size() || v < min || v > max) {
        return Field::bad;
    }
    out = v;
    return Field::ok;
}

Field duration_field(std::string_view doc, std::string_view pointer, int64_t min, int64_t max,
                     int64_t& out) {
    if (!present(doc, pointer)) {
        return Field::absent;
    }
    std::optional<std::string_view> text = json_plain(doc, pointer, base::JsonType::string);
    if (!text) {
        return Field::bad;
    }
    std::optional<int64_t> ns = config::parse_duration_ns(*text);
    if (!ns || *ns < min || *ns > max) {
        return Field::bad;
    }
    out = *ns;
    return Field::ok;
}

} // namespace portcullis::admin
