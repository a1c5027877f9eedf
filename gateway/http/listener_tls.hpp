// The data listener's TLS server context: built once from a PEM certificate chain and key
// with the protocol floor, ciphers and options we accept, with errors that name the config
// key and file at fault.
#pragma once

#include "gateway/core/net.hpp"

#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <memory>
#include <string>

namespace boost::asio::ssl {
class context;
}

namespace imagegate::gateway {

/// Why the listener's TLS context could not be built: the config key at fault and a reason
/// that names the file. Never contains key material.
struct listener_tls_error {
    std::string key;
    std::string reason;
};

/// Lets `result<T, listener_tls_error>::value()` throw a std::runtime_error "key: reason".
[[noreturn]] void throw_exception_from_error(const listener_tls_error& e,
                                             const boost::source_location& loc);

/// Builds the server context for the data listener from a PEM certificate chain (leaf
/// first) and its PEM private key: TLS >= 1.2, ECDHE with AEAD ciphers only for TLS 1.2,
/// no compression, no renegotiation. Encrypted keys are refused (no passphrase prompt).
/// Called at start-up (and by --check-config); the context is then shared read-only.
boost::system::result<std::shared_ptr<asio::ssl::context>, listener_tls_error>
make_listener_tls_context(const std::string& cert_file, const std::string& key_file);

}  // namespace imagegate::gateway
