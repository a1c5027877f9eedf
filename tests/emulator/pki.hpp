// A throwaway test PKI generated in memory: one EC P-256 CA and a localhost server leaf it
// signed. Each call makes a new, unrelated CA, so two calls give a "wrong CA" for tests.
#pragma once

#include <string>
#include <string_view>

namespace imagegate::testing {

/// PEM texts of one generated PKI. The CA key is discarded after signing: nothing else can
/// ever be issued under this CA.
struct pki {
  std::string ca_cert_pem;      ///< the CA certificate clients trust
  std::string server_cert_pem;  ///< leaf: SAN DNS:localhost, IP:127.0.0.1, IP:::1; serverAuth
  std::string server_key_pem;   ///< the leaf's private key, PKCS#8 PEM, unencrypted

  bool empty() const noexcept { return ca_cert_pem.empty(); }
};

/// Generates a CA (CA:TRUE, keyCertSign) and a server leaf valid from now-1h to now+2 days.
/// Throws std::runtime_error carrying the OpenSSL error text if any OpenSSL call fails.
/// Thread-safe (OpenSSL 3 initialises itself).
pki make_test_pki();

/// Writes `content` to `path`, replacing the file. Throws std::runtime_error on failure.
void write_file(const std::string& path, std::string_view content);

}  // namespace imagegate::testing
