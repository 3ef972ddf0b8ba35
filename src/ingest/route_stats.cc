#include "portcullis/ingest/route_stats.hh"

#include <algorithm>

namespace portcullis::ingest {

namespace {

constexpr std::array<std::string_view, status_slot_count> slot_labels = {
    "100", "200", "202", "400", "401", "403", "404", "405", "408", "409", "411",
    "413", "415", "429", "431", "501", "503", "1xx", "2xx", "3xx", "4xx", "5xx",
};

// The labels spell the codes they stand for, in the same order.
constexpr bool labels_match() {
    for (size_t i = 0; i < answered_codes.size(); ++i) {
        const std::string_view l = slot_labels[i];
        const int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        if (code != answered_codes[i] || status_slot(answered_codes[i]) != i) {
            return false;
        }
    }
    return status_slot(299) == answered_codes.size() + 1 &&
           status_slot(999) == status_slot_count - 1;
}
static_assert(labels_match());

} // namespace

std::string_view status_slot_label(size_t slot) {
    return slot < slot_labels.size() ? slot_labels[slot] : "5xx";
}

RouteStatsTable::~RouteStatsTable() {
    for (std::atomic<RouteStats*>& c : _chunks) {
        delete[] c.load(std::memory_order_relaxed); // NOLINT(cppcoreguidelines-owning-memory)
    }
}

void RouteStatsTable::reserve(size_t slots) {
    const size_t chunks = std::min((slots + chunk_blocks - 1) / chunk_blocks, chunk_count);
    for (size_t i = 0; i < chunks; ++i) {
        if (_chunks[i].load(std::memory_order_relaxed) == nullptr) {
            // Zeroed blocks, published whole (release) for the scrape's acquire.
            _chunks[i].store(
                new RouteStats[chunk_blocks](), // NOLINT(cppcoreguidelines-owning-memory)
                std::memory_order_release);
        }
    }
}

const RouteStats* RouteStatsTable::find(size_t slot) const {
    if (slot / chunk_blocks >= chunk_count) {
        return nullptr;
    }
    const RouteStats* c = _chunks[slot / chunk_blocks].load(std::memory_order_acquire);
    return c != nullptr ? &c[slot % chunk_blocks] : nullptr;
}

} // namespace portcullis::ingest
