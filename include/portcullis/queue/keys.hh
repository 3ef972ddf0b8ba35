// Reading a route's dedup and ordering keys out of a request: the SPEC's field references
// (`header:NAME`, `json:/pointer`, `query:NAME`, `path:PARAM`) and ordering timestamps.
//
//   if (ref.kind != FieldRef::Kind::json) {
//       std::optional<std::string_view> v = head_field(ref, head, route);   // while parsing
//   } else {
//       std::optional<std::string_view> v = json_field(ref, body);          // body complete
//   }
//   if (v) { Fingerprint key = fingerprint(base::as_bytes(*v), route.key_seed); }
//
// Values are taken as sent: a header's value as the parser trimmed it (the first field of that
// name), a query parameter's value without percent-decoding, a path segment as matched, and a
// JSON value as its raw token (a string with its quotes and escapes). A provider resends the same
// bytes, so that is what keys are compared by.
#pragma once

#include "portcullis/config/config.hh"
#include "portcullis/config/snapshot.hh"
#include "portcullis/http/parser.hh"

#include <cstdint>
#include <optional>
#include <string_view>

namespace portcullis::queue {

// A header, query or path reference read from the request head; nullopt when the request does not
// carry it (or when ref is a json reference).
std::optional<std::string_view>
head_field(const config::FieldRef& ref, const http::RequestHead& head, const config::Route& route);

// A json reference read from a complete body: the raw token found at the pointer; nullopt when
// the body is not valid JSON or holds nothing there.
std::optional<std::string_view> json_field(const config::FieldRef& ref, std::string_view body);

// The first value of query parameter `name` in a query string ("a=1&b=2"); "" for "a" or "a=".
std::optional<std::string_view> query_param(std::string_view query, std::string_view name);

// An ordering timestamp: a decimal integer (a Unix time in any unit, or a sequence number:
// compared as it is) or an RFC 3339 date-time (compared as Unix nanoseconds). A JSON string
// token is read without its quotes. One route's events must keep to one form. nullopt for
// anything else.
std::optional<int64_t> parse_timestamp(std::string_view value);

} // namespace portcullis::queue
