// A small synchronous HTTP/1.1 client for tests: one-shot requests, keep-alive connections
// and raw byte exchanges, plain or TLS verified against a given CA, each bounded by a timeout.
#pragma once

#include "tests/emulator/pki.hpp"

#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace imagegate::testing {

using header_list = std::vector<std::pair<std::string, std::string>>;

/// Where and how to connect.
struct endpoint {
    std::string host = "127.0.0.1";  ///< address to connect to (name or literal IP)
    std::uint16_t port = 0;
    bool tls = true;
    std::string ca_pem;  ///< the only trusted CA (verify_peer); required when tls
    /// Name for SNI and certificate verification; empty: `host`. SNI is omitted for IP
    /// literals (RFC 6066 §3), the IP SAN is checked instead.
    std::string server_name;
    std::chrono::milliseconds timeout = std::chrono::seconds(10);  ///< per call, whole exchange
    std::size_t body_limit = 64 * 1024 * 1024;                     ///< response body bytes
};

struct response {
    unsigned status = 0;
    header_list headers;  ///< in wire order, names as sent
    std::string body;
    bool keep_alive = true;  ///< the server's view (HTTP/1.1 default unless Connection: close)

    /// First value of header `name` (case-insensitive); empty if absent.
    std::string header(std::string_view name) const;
    /// How many times header `name` appears (case-insensitive).
    std::size_t count(std::string_view name) const;
};

/// A keep-alive connection: several requests, one after the other, on one connection.
/// Errors (connect, TLS handshake, timeout, malformed or truncated response) throw
/// boost::system::system_error; the connection is then closed. Not thread-safe.
class connection {
public:
    explicit connection(endpoint ep);  ///< connects (and handshakes) at once
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Sends one request (Host, Content-Length added) and reads the whole response (for HEAD,
    /// the head only). Closes the connection after it if the response says Connection: close.
    response request(boost::beast::http::verb method, std::string target, header_list headers = {},
                     std::string body = {});
    bool is_open() const noexcept;
    void close() noexcept;

    struct impl;

private:
    std::unique_ptr<impl> impl_;
};

/// One request on a fresh connection, which is closed afterwards.
response request(const endpoint& ep, boost::beast::http::verb method, std::string target,
                 header_list headers = {}, std::string body = {});

/// Sends `bytes` as-is (over TLS when ep.tls) and returns everything read until the peer
/// closes or `ep.timeout` passes, whichever comes first. Only connect/handshake errors throw.
std::string raw_exchange(const endpoint& ep, std::string bytes);

/// One step of a paced exchange: wait `pause`, then send `bytes` in a write of their own.
struct paced_step {
    std::chrono::milliseconds pause{0};
    std::string bytes;
};

struct paced_result {
    std::string received;  ///< everything read
    bool closed = false;   ///< the peer closed (or reset) the connection before ep.timeout
    /// When it did, from the moment the connection was established (TCP connect, and the
    /// TLS handshake when ep.tls).
    std::chrono::milliseconds closed_after{0};
};

/// Like raw_exchange, but the bytes go out as `steps` (TCP_NODELAY, one write per step after
/// its pause, so each is its own segment or TLS record) while the answer is being read; no
/// step is sent after the peer closed. Only connect/handshake errors throw.
paced_result paced_exchange(const endpoint& ep, std::vector<paced_step> steps);

}  // namespace imagegate::testing
