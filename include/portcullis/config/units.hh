// The units of the configuration, also used wherever else the program reads them (the admin API's
// "visibility": "30s", "delay": "10s").
//
//   if (auto ns = parse_duration_ns("250ms")) { ... }           // 250'000'000
//   if (auto n = parse_size("64MiB")) { ... }                    // 67108864
//   if (auto r = parse_rate("20/s")) { ... }                     // {20, 1'000'000'000}
//   std::string why = duration_error("1.5s");                    // for the message
//
// Durations: a whole number and a unit of ms, s, m or h; the unit is required. Sizes: a whole
// number of bytes, or KiB, MiB, GiB (powers of 1024); KB, MB and GB are refused rather than
// guessed. Rates: a whole number per s, min or h. Parsers return std::nullopt on anything else,
// including overflow; zero durations and sizes parse (callers decide whether zero makes sense),
// a zero rate does not (it would mean "never").
#pragma once

#include "portcullis/config/config.hh"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace portcullis::config {

std::optional<int64_t> parse_duration_ns(std::string_view text);
std::optional<uint64_t> parse_size(std::string_view text);
std::optional<Rate> parse_rate(std::string_view text);

// Why text did not parse, as a message fragment: "durations need a unit: 10s, not 10".
// Precondition: the matching parser returned std::nullopt for text.
std::string duration_error(std::string_view text);
std::string size_error(std::string_view text);
std::string rate_error(std::string_view text);

// The shortest form that parses back to the same value: 72h, 90s, 250ms, 64MiB, 1536KiB, 512.
// Durations that are not a whole number of milliseconds print in ns ("1500ns"), for display only.
std::string format_duration(int64_t ns);
std::string format_size(uint64_t bytes);
std::string format_rate(const Rate& rate); // 20/s, 100/min, 5000/h

} // namespace portcullis::config
