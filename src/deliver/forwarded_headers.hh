// The stored request's fields a sink forwards with a job (the HTTP sink's request, the NATS
// sink's message headers): the same filtering for every sink, so that what one drops no other
// passes on. Private to src/deliver.
//
//   std::vector<http::Header> fields;           // reused: no allocation once grown
//   std::string why;
//   if (!append_forwarded_headers(record, {}, {.replaced = cfg.headers}, fields, why)) { ... }
//
// Dropped: the fields that describe the connection (Connection and every field it names,
// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade, Expect), Host and
// Content-Length, the credentials (Authorization, Proxy-Authorization, Cookie), any incoming
// Portcullis-* (a sender must not spoof them), a field of `replaced` (the sink's own value
// replaces it) and, with drop_webhook_fields (the HTTP sink signs), webhook-id/-timestamp/
// -signature.
#pragma once

#include "portcullis/config/config.hh"
#include "portcullis/http/header.hh"
#include "portcullis/queue/record.hh"

#include <span>
#include <string>
#include <vector>

namespace portcullis::deliver {

struct ForwardRules {
    std::span<const config::SinkHeader> replaced;
    bool drop_webhook_fields = false;
};

// Appends the forwarded fields of record (when set, else of headers) to out, in order. False,
// with error, when the request has more than 8 Connection fields (nothing appended then).
bool append_forwarded_headers(const queue::JobRecord* record, std::span<const http::Header> headers,
                              const ForwardRules& rules, std::vector<http::Header>& out,
                              std::string& error);

} // namespace portcullis::deliver
