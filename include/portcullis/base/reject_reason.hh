// The stable reason codes of refused webhooks (SPEC section 3), shared by the log line, the
// counters and (later) the webhook.rejected event, so that the three always agree.
//
//   RejectReason r = reject_reason_of(verify_reason);      // or RejectReason::body_too_large
//   counters[index(r)].fetch_add(1);  log.field("reason", reject_reason_code(r));
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace portcullis::base {

// The first eight mirror verify::Reason (less ok), in its order; then admission's, then the
// queue's (dedup, ordering).
enum class RejectReason : uint8_t {
    signature_missing,
    signature_mismatch,
    timestamp_missing,
    timestamp_malformed,
    timestamp_too_old,
    timestamp_too_new,
    secret_unset,
    malformed,
    ip_denied,
    rate_limited,
    body_too_large,
    conflict, // the dedup key of an earlier job with another body
    stale,    // not newer than the newest event accepted for its ordering key
};
constexpr size_t reject_reason_count = static_cast<size_t>(RejectReason::stale) + 1;

constexpr std::string_view reject_reason_code(RejectReason r) {
    constexpr std::string_view codes[reject_reason_count] = {
        "signature_missing",
        "signature_mismatch",
        "timestamp_missing",
        "timestamp_malformed",
        "timestamp_too_old",
        "timestamp_too_new",
        "secret_unset",
        "malformed",
        "ip_denied",
        "rate_limited",
        "body_too_large",
        "conflict",
        "stale",
    };
    return codes[static_cast<size_t>(r)];
}

constexpr size_t index(RejectReason r) {
    return static_cast<size_t>(r);
}

} // namespace portcullis::base
