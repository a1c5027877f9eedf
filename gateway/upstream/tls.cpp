#include "gateway/upstream/tls.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/throw_exception.hpp>

#include <openssl/ssl.h>

#include <stdexcept>

namespace imagegate::upstream {

void throw_exception_from_error(const tls_error& e, const boost::source_location& loc) {
    boost::throw_exception(std::runtime_error("upstream TLS: " + e.reason), loc);
}

boost::system::result<std::shared_ptr<asio::ssl::context>, tls_error> make_tls_context(
    const tls_options& opts) {
    namespace ssl = asio::ssl;
    if (!opts.ca_file.empty() && !opts.ca_pem.empty()) {
        return tls_error{"set either a CA file or CA PEM text, not both"};
    }
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);

    // The method-independent floor: anything below TLS 1.2 is refused during the handshake.
    if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION) != 1) {
        return tls_error{"cannot set the minimum protocol version to TLS 1.2"};
    }
    boost::system::error_code ec;
    // Compression enables CRIME-style secret recovery; renegotiation is never needed here.
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression, ec);
    if (ec) {
        return tls_error{"cannot set TLS options: " + ec.message()};
    }
    ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
    if (ec) {
        return tls_error{"cannot enable peer verification: " + ec.message()};
    }
    // Client-side session caching, so that OpenSSL keeps the TLS 1.3 session tickets the
    // server sends after the handshake (it ignores them otherwise). The connections of an
    // origin share the newest session through upstream::tls_session_cache; OpenSSL's own
    // store is not used.
    SSL_CTX_set_session_cache_mode(ctx->native_handle(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);

    if (!opts.ca_file.empty()) {
        ctx->load_verify_file(opts.ca_file, ec);
        if (ec) {
            return tls_error{"cannot load CA file '" + opts.ca_file + "': " + ec.message()};
        }
    } else if (!opts.ca_pem.empty()) {
        ctx->add_certificate_authority(asio::buffer(opts.ca_pem), ec);
        if (ec) {
            return tls_error{"cannot load CA PEM text: " + ec.message()};
        }
    } else {
        ctx->set_default_verify_paths(ec);
        if (ec) {
            return tls_error{"cannot load the system CA store: " + ec.message()};
        }
    }
    return ctx;
}

}  // namespace imagegate::upstream
