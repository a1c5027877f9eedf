// Builds the one TLS client context shared by every upstream connection: TLS >= 1.2,
// peer verification on, trust from a PEM file, PEM text or the system store.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/asio/ssl/context.hpp>
#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <memory>
#include <string>

namespace imagegate::upstream {

/// Where trusted CA certificates come from. At most one of the two fields may be set;
/// both empty means the system store (`set_default_verify_paths`).
struct tls_options {
    /// Path of a PEM bundle of trusted CAs (config `upstream.ca_file`).
    std::string ca_file;
    /// PEM text of trusted CAs; used by tests with an in-memory test PKI.
    std::string ca_pem;
};

/// Why the context could not be built, in words fit for a start-up error message.
/// Never contains key material; may contain the CA file path (operator-supplied).
struct tls_error {
    std::string reason;
};

/// Lets `result<T, tls_error>::value()` throw a std::runtime_error carrying `reason`.
[[noreturn]] void throw_exception_from_error(const tls_error& e, const boost::source_location& loc);

/// Builds the client context. Called once by main at start-up; the context is then
/// shared read-only by all connections (OpenSSL SSL_CTX is safe to share once configured).
boost::system::result<std::shared_ptr<asio::ssl::context>, tls_error> make_tls_context(
    const tls_options& opts);

}  // namespace imagegate::upstream
