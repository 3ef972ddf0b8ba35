// Reading the fields of a control-plane request's JSON body. Every field of every endpoint goes
// through these, so that one kind of value is checked one way everywhere.
//
//   int64_t max = 1;
//   if (integer_field(body, "/max", 1, 1000, max) == Field::bad) {
//       answer(400, R"({"error":"bad_request","detail":"max: an integer from 1 to 1000"})");
//   }
//   int64_t wait = 0;
//   if (duration_field(body, "/wait", 0, 60 * ns_per_s, wait) == Field::bad) { ... }
//
// A field the body does not have is `absent` (the caller keeps its default); one that has the
// wrong type, the wrong form or a value out of range is `bad` and `out` is left alone.
#pragma once

#include "portcullis/base/json_pointer.hh"

#include <cstdint>
#include <optional>
#include <string_view>

namespace portcullis::admin {

enum class Field : uint8_t { absent, ok, bad };

// A string's raw token without its quotes when it has no escape (every string this API takes is
// plain ASCII: route names, job ids, durations), or any other value's token as written; nullopt
// when the value is missing, of another type, or a string with an escape.
std::optional<std::string_view> json_plain(std::string_view doc, std::string_view pointer,
                                           base::JsonType type);

// An integer field: a JSON number written as an integer (-?(0|[1-9][0-9]*): no fraction, no
// exponent, so 1.0, 1.5, 1e2 and 1e9 are bad even where their value is whole) within
// [min, max]. A string ("3"), a boolean or null is bad too.
Field integer_field(std::string_view doc, std::string_view pointer, int64_t min, int64_t max,
                    int64_t& out);

// A duration field, a string such as "30s" or "250ms" (config::parse_duration_ns), within
// [min, max] nanoseconds.
Field duration_field(std::string_view doc, std::string_view pointer, int64_t min, int64_t max,
                     int64_t& out);

} // namespace portcullis::admin
