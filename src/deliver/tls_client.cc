#include "tls_client.hh"

#include <openssl/err.h>
#include <openssl/x509.h>

namespace portcullis::deliver {

std::string make_client_tls_context(const std::optional<std::string>& ca,
                                    const std::string& system_ca_file, const std::string& where,
                                    bssl::UniquePtr<SSL_CTX>& out) {
    out.reset(SSL_CTX_new(TLS_method()));
    if (!out || SSL_CTX_set_min_proto_version(out.get(), TLS1_2_VERSION) != 1) {
        return where + ": cannot make a TLS context";
    }
    SSL_CTX_set_verify(out.get(), SSL_VERIFY_PEER, nullptr);
    const std::string& file = ca ? *ca : system_ca_file;
    if (SSL_CTX_load_verify_locations(out.get(), file.c_str(), nullptr) != 1) {
        ERR_clear_error();
        out.reset();
        return where + (ca ? ".ca: " : ": the system's CA store ") + file +
               ": cannot be read or holds no PEM certificate";
    }
    return {};
}

void set_client_peer(SSL* ssl, const std::string& host, bool host_is_ip) {
    if (!host_is_ip) {
        SSL_set_tlsext_host_name(ssl, host.c_str());
        SSL_set1_host(ssl, host.c_str());
    } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str());
    }
}

std::string client_tls_error(const SSL* ssl, const tls::Transport& transport,
                             const std::string& host) {
    const long verify = ssl != nullptr ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
        return "tls: the server's certificate is not for " + host + " (wrong host name)";
    }
    if (verify != X509_V_OK) {
        return std::string("tls: the server's certificate is not trusted (") +
               X509_verify_cert_error_string(verify) + ")";
    }
    return "tls: handshake failed (" + std::string(transport.failure_detail()) + ")";
}

} // namespace portcullis::deliver
