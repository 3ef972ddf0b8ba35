// The client side of TLS the sinks share (https:// for HTTP, tls:// for NATS): the context,
// the name a session verifies, and the message for a failed handshake. Sessions run on
// tls::Transport like the server's. Private to src/deliver.
//
//   bssl::UniquePtr<SSL_CTX> ctx;
//   if (auto err = make_client_tls_context(cfg.ca, system_ca, "sinks.app.http", ctx); !err.empty())
//   SSL* ssl = transport.connect(ctx.get());
//   set_client_peer(ssl, host, host_is_ip);
//   ... on failure: client_tls_error(ssl, transport, host)
#pragma once

#include "portcullis/tls/transport.hh"

#include <openssl/ssl.h>

#include <optional>
#include <string>

namespace portcullis::deliver {

// TLS 1.2 or later, the peer's certificate verified against `ca` (a PEM file) or, without it,
// the system's store. Blocks (reads the file): start-up only. "" or what is wrong, starting with
// `where` (the configuration key of the sink).
std::string make_client_tls_context(const std::optional<std::string>& ca,
                                    const std::string& system_ca_file, const std::string& where,
                                    bssl::UniquePtr<SSL_CTX>& out);

// SNI and the name the certificate must carry: host, or its IP address for an IP literal.
void set_client_peer(SSL* ssl, const std::string& host, bool host_is_ip);

// What went wrong with a client session, for the log: a certificate for another name, an
// untrusted one, or the handshake's reason.
std::string client_tls_error(const SSL* ssl, const tls::Transport& transport,
                             const std::string& host);

} // namespace portcullis::deliver
