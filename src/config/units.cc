#include "portcullis/config/units.hh"

#include "text.hh"

#include <limits>

namespace portcullis::config {

namespace {

constexpr int64_t ns_per_ms = 1'000'000;
constexpr int64_t ns_per_s = 1'000'000'000;
constexpr int64_t ns_per_min = 60 * ns_per_s;
constexpr int64_t ns_per_h = 60 * ns_per_min;

// A whole number followed by a unit, split apart; overflow says the number does not fit in 64
// bits.
struct Amount {
    uint64_t value = 0;
    bool has_digits = false;
    bool overflow = false;
    std::string_view unit;
};

Amount split_amount(std::string_view text) {
    Amount a;
    size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        a.has_digits = true;
        auto digit = static_cast<uint64_t>(text[i] - '0');
        if (a.value > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
            a.overflow = true;
        } else {
            a.value = a.value * 10 + digit;
        }
    }
    a.unit = text.substr(i);
    return a;
}

struct Unit {
    std::string_view name;
    uint64_t scale;
};

constexpr Unit duration_units[] = {
    {"ms", ns_per_ms}, {"s", ns_per_s}, {"m", ns_per_min}, {"h", ns_per_h}};
constexpr Unit size_units[] = {
    {"", 1}, {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}};
constexpr Unit rate_units[] = {{"/s", ns_per_s}, {"/min", ns_per_min}, {"/h", ns_per_h}};

template <size_t N>
const Unit* find_unit(const Unit (&units)[N], std::string_view name) {
    for (const Unit& u : units) {
        if (u.name == name) {
            return &u;
        }
    }
    return nullptr;
}

std::optional<uint64_t> scaled(const Amount& a, uint64_t scale, uint64_t max) {
    if (!a.has_digits || a.overflow || a.value > max / scale) {
        return std::nullopt;
    }
    return a.value * scale;
}

bool is_fraction(std::string_view text) {
    Amount a = split_amount(text);
    if (!a.has_digits || a.unit.size() < 2 || a.unit[0] != '.') {
        return false;
    }
    return split_amount(a.unit.substr(1)).has_digits;
}

} // namespace

std::optional<int64_t> parse_duration_ns(std::string_view text) {
    Amount a = split_amount(text);
    const Unit* u = find_unit(duration_units, a.unit);
    if (u == nullptr) {
        return std::nullopt;
    }
    auto ns = scaled(a, u->scale, std::numeric_limits<int64_t>::max());
    if (!ns) {
        return std::nullopt;
    }
    return static_cast<int64_t>(*ns);
}

std::optional<uint64_t> parse_size(std::string_view text) {
    Amount a = split_amount(text);
    const Unit* u = find_unit(size_units, a.unit);
    if (u == nullptr) {
        return std::nullopt;
    }
    return scaled(a, u->scale, std::numeric_limits<uint64_t>::max());
}

std::optional<Rate> parse_rate(std::string_view text) {
    Amount a = split_amount(text);
    const Unit* u = find_unit(rate_units, a.unit);
    if (u == nullptr || !a.has_digits || a.overflow || a.value == 0) {
        return std::nullopt;
    }
    return Rate{a.value, static_cast<int64_t>(u->scale)};
}

std::string duration_error(std::string_view text) {
    Amount a = split_amount(text);
    if (is_fraction(text)) {
        return "durations take whole numbers (write 1500ms, not 1.5s), found " +
               detail::quote(text);
    }
    if (a.has_digits && a.unit.empty()) {
        return "a duration needs a unit: " + std::string(text) + "s or " + std::string(text) +
               "ms, not " + detail::quote(text);
    }
    if (a.has_digits && find_unit(duration_units, a.unit) != nullptr) {
        return "duration " + detail::quote(text) + " is too large";
    }
    if (a.has_digits) {
        return "unknown duration unit " + detail::quote(a.unit) + " (expected ms, s, m or h)";
    }
    return "expected a duration like 250ms, 10s, 5m or 24h, found " + detail::quote(text);
}

std::string size_error(std::string_view text) {
    Amount a = split_amount(text);
    if (is_fraction(text)) {
        return "sizes take whole numbers (write 1536KiB, not 1.5MiB), found " + detail::quote(text);
    }
    struct Ambiguous {
        std::string_view unit;
        std::string_view meant;
    };
    static constexpr Ambiguous ambiguous[] = {
        {"K", "KiB"},  {"k", "KiB"},   {"KB", "KiB"},  {"kB", "KiB"}, {"kb", "KiB"},
        {"Kb", "KiB"}, {"kib", "KiB"}, {"KIB", "KiB"}, {"M", "MiB"},  {"MB", "MiB"},
        {"mb", "MiB"}, {"mib", "MiB"}, {"MIB", "MiB"}, {"G", "GiB"},  {"GB", "GiB"},
        {"gb", "GiB"}, {"gib", "GiB"}, {"GIB", "GiB"}, {"B", ""},     {"b", ""},
    };
    if (a.has_digits && !a.overflow) {
        for (const Ambiguous& amb : ambiguous) {
            if (a.unit == amb.unit) {
                if (amb.meant.empty()) {
                    return "write sizes in bytes without a unit: " + std::to_string(a.value) +
                           ", not " + detail::quote(text);
                }
                return "unit " + detail::quote(amb.unit) + " is ambiguous: write " +
                       std::to_string(a.value) + std::string(amb.meant) +
                       " (sizes are powers of 1024)";
            }
        }
    }
    if (a.has_digits && find_unit(size_units, a.unit) != nullptr) {
        return "size " + detail::quote(text) + " is too large";
    }
    if (a.has_digits) {
        return "unknown size unit " + detail::quote(a.unit) +
               " (expected KiB, MiB or GiB, or none)";
    }
    return "expected a size like 512, 16KiB, 1MiB or 1GiB, found " + detail::quote(text);
}

std::string rate_error(std::string_view text) {
    Amount a = split_amount(text);
    if (a.has_digits && !a.overflow && a.value == 0 && find_unit(rate_units, a.unit) != nullptr) {
        return "a rate of 0 would refuse everything: remove the limit or give at least 1";
    }
    if (a.has_digits && a.overflow) {
        return "rate " + detail::quote(text) + " is too large";
    }
    if (a.has_digits && !a.unit.empty() && a.unit[0] == '/') {
        return "unknown rate period " + detail::quote(a.unit.substr(1)) + " (expected s, min or h)";
    }
    return "expected a rate like 20/s, 100/min or 5000/h, found " + detail::quote(text);
}

std::string format_duration(int64_t ns) {
    if (ns < 0) {
        // Only reachable through a caller's arithmetic; negate via uint64 so INT64_MIN is safe.
        uint64_t magnitude = 0 - static_cast<uint64_t>(ns);
        if (magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
            return "-" + std::to_string(magnitude) + "ns";
        }
        return "-" + format_duration(static_cast<int64_t>(magnitude));
    }
    if (ns == 0) {
        return "0s";
    }
    static constexpr Unit largest_first[] = {
        {"h", ns_per_h}, {"m", ns_per_min}, {"s", ns_per_s}, {"ms", ns_per_ms}};
    for (const Unit& u : largest_first) {
        if (static_cast<uint64_t>(ns) % u.scale == 0) {
            return std::to_string(static_cast<uint64_t>(ns) / u.scale) + std::string(u.name);
        }
    }
    return std::to_string(ns) + "ns";
}

std::string format_size(uint64_t bytes) {
    static constexpr Unit largest_first[] = {
        {"GiB", 1ull << 30}, {"MiB", 1ull << 20}, {"KiB", 1ull << 10}};
    if (bytes != 0) {
        for (const Unit& u : largest_first) {
            if (bytes % u.scale == 0) {
                return std::to_string(bytes / u.scale) + std::string(u.name);
            }
        }
    }
    return std::to_string(bytes);
}

std::string format_rate(const Rate& rate) {
    for (const Unit& u : rate_units) {
        if (static_cast<uint64_t>(rate.period_ns) == u.scale) {
            return std::to_string(rate.count) + std::string(u.name);
        }
    }
    return std::to_string(rate.count) + "/" + format_duration(rate.period_ns);
}

} // namespace portcullis::config
