// A job as the pull API hands it to consumers (POST /v1/lease) and `spool dump` prints it: one
// JSON object, appended to a caller's string.
//
//   std::string out = "{\"jobs\":[";
//   append_job_json(out, record, attempt);
//   out += "]}";
//
// {"id":"<26-char job id>","route":"github","received_at":"2026-11-22T13:18:00.123Z",
//  "attempt":1,"source_ip":"203.0.113.5","headers":{"x-github-event":"push",...},
//  "body":"...","body_encoding":"utf8"|"base64"}
//
// - received_at is RFC 3339 UTC with milliseconds; source_ip is the peer address without port,
//   IPv4 in dotted form (not IPv4-mapped), IPv6 as RFC 5952.
// - enqueued_by, after source_ip and only for a job enqueued through the control plane (POST
//   /v1/routes/{route}/jobs): the name of the token that sent it (source_ip is then that
//   client's address).
// - headers: one member per field name, lowercased (field names are case-insensitive), in the
//   order of first appearance. A name sent more than once becomes one member whose value joins
//   the values in the order received with ", ", which is how RFC 9110 section 5.3 lets a
//   recipient combine field lines (Set-Cookie aside, which no webhook sends). A value that is
//   well-formed UTF-8 is passed byte for byte; one that is not (obs-text, RFC 9110 section 5.5)
//   is given as its ISO-8859-1 reading, every byte >= 0x80 as \u00XX, so that a consumer
//   recovers the exact bytes by encoding the string as Latin-1.
// - body: byte for byte. Well-formed UTF-8 (base/utf8.hh) is sent as a JSON string with
//   body_encoding "utf8"; anything else as standard base64 (RFC 4648 section 4, padded) with
//   body_encoding "base64". Either way decoding gives exactly the stored bytes.
#pragma once

#include "portcullis/queue/record.hh"

#include <cstdint>
#include <string>

namespace portcullis::queue {

// The pull API's form, with the delivery attempt (1 for the first lease).
void append_job_json(std::string& out, const JobRecord& record, uint32_t attempt);

// The "headers" member's value alone (the exec sink's headers file).
void append_headers_json(std::string& out, const JobRecord& record);

// `spool dump`'s form: the same object without "attempt", which lives in the lease state and not
// in the spool record.
void append_job_json(std::string& out, const JobRecord& record);

} // namespace portcullis::queue
