#include "portcullis/ingest/route_stats.hh"

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

} // namespace portcullis::ingest
