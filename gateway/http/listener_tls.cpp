// The data listener's TLS server context (OpenSSL): protocol floor, ciphers, options, and
// loading the certificate chain and its key with errors that name what failed.
#include "gateway/http/listener_tls.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/throw_exception.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <stdexcept>

namespace imagegate::gateway {

namespace ssl = asio::ssl;

namespace {

// OpenSSL's default passphrase callback prompts on the terminal; an encrypted key must make
// start-up fail instead.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*user*/) { return 0; }

// The reason of the earliest queued OpenSSL error, the root cause ("no start line" rather
// than the "PEM lib" stacked on it), then clears the queue. Reason strings name what failed,
// never the bytes of the input.
std::string openssl_reason() {
    const unsigned long first = ERR_get_error();
    ERR_clear_error();
    const char* reason = first != 0 ? ERR_reason_error_string(first) : nullptr;
    return reason != nullptr ? reason : "unknown error";
}

}  // namespace

void throw_exception_from_error(const listener_tls_error& e, const boost::source_location& loc) {
    boost::throw_exception(std::runtime_error(e.key + ": " + e.reason), loc);
}

boost::system::result<std::shared_ptr<ssl::context>, listener_tls_error> make_listener_tls_context(
    const std::string& cert_file, const std::string& key_file) {
    ERR_clear_error();
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX* native = ctx->native_handle();

    // TLS 1.2 is the floor (RFC 8996 retires 1.0 and 1.1). For 1.2: ECDHE only (forward
    // secrecy) with AEAD ciphers, the server's order. TLS 1.3 suites are all AEAD already.
    // No compression (CRIME), no renegotiation (a client-driven CPU cost, never needed).
    if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
        return listener_tls_error{"server.tls_cert", "cannot require TLS 1.2: " + openssl_reason()};
    }
    std::uint64_t options = SSL_OP_ALL | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE;
#ifdef SSL_OP_NO_RENEGOTIATION
    options |= SSL_OP_NO_RENEGOTIATION;
#endif
    SSL_CTX_set_options(native, options);
    if (SSL_CTX_set_cipher_list(native,
                                "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1 ||
        SSL_CTX_set1_groups_list(native, "X25519:P-256:P-384") != 1) {
        return listener_tls_error{"server.tls_cert",
                                  "cannot configure ciphers or groups: " + openssl_reason()};
    }
    // Idle keep-alive connections give their 34 KiB of record buffers back.
    SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(native, no_passphrase);

    if (SSL_CTX_use_certificate_chain_file(native, cert_file.c_str()) != 1) {
        return listener_tls_error{"server.tls_cert", "cannot load a PEM certificate chain from '" +
                                                         cert_file + "': " + openssl_reason()};
    }
    // The key is parsed here rather than by SSL_CTX_use_PrivateKey_file so that "not a key"
    // and "not this certificate's key" get different messages.
    const std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(key_file.c_str(), "r"),
                                                        &BIO_free);
    if (!bio) {
        return listener_tls_error{"server.tls_key",
                                  "cannot open '" + key_file + "': " + openssl_reason()};
    }
    const std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr), &EVP_PKEY_free);
    if (!key) {
        return listener_tls_error{"server.tls_key", "no unencrypted PEM private key in '" +
                                                        key_file + "': " + openssl_reason()};
    }
    if (SSL_CTX_use_PrivateKey(native, key.get()) != 1 || SSL_CTX_check_private_key(native) != 1) {
        return listener_tls_error{"server.tls_key", "the private key in '" + key_file +
                                                        "' does not match the certificate in '" +
                                                        cert_file + "' (" + openssl_reason() + ")"};
    }
    return ctx;
}

}  // namespace imagegate::gateway
