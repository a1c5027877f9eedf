// One upstream connection: resolve + connect + (verified) TLS handshake under one deadline,
// then HTTP/1.1 exchanges (write request, read full response) each under one deadline.
#pragma once

#include "gateway/core/errc.hpp"
#include "gateway/core/net.hpp"
#include "gateway/upstream/response_reader.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/assert/source_location.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/result.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

struct ssl_st;
struct ssl_session_st;

namespace imagegate::upstream {

namespace beast = boost::beast;
namespace http = boost::beast::http;

using clock = std::chrono::steady_clock;

/// What the gateway keeps from an upstream answer.
struct response {
    /// HTTP status code.
    unsigned status = 0;
    /// The body; `capacity() >= size() + body_padding`.
    std::string body;
    /// `Content-Type`, `Retry-After`, `RateLimit`, `RateLimit-Policy`: empty when absent
    /// or not kept (see keep_header_value).
    std::string content_type;
    std::string retry_after;
    std::string ratelimit;
    std::string ratelimit_policy;
    /// From the first request byte written to the last response byte read.
    clock::duration latency{};
    /// The exchange ran on a connection that had served an exchange before.
    bool reused_connection = false;
};

/// The step a connection failed in; decides the errc and whether a retry is allowed.
enum class phase {
    resolve,    ///< DNS lookup
    connect,    ///< TCP connect
    handshake,  ///< TLS handshake, including certificate and host-name verification
    write,      ///< writing the request
    read,       ///< reading the response head or body
};

std::string_view to_string(phase p) noexcept;
std::ostream& operator<<(std::ostream& os, phase p);

/// A failed step with the lower layer's own error code (kept for the log line).
struct failure {
    boost::system::error_code ec;
    upstream::phase phase = phase::connect;
    /// At least one response byte had arrived: the request may have been processed, so it
    /// is never retried.
    bool response_started = false;
};

/// Lets `result<T, failure>::value()` throw a system_error.
[[noreturn]] void throw_exception_from_error(const failure& f, const boost::source_location& loc);

/// The gateway error for a failure: any deadline → upstream_timeout; resolve/connect →
/// upstream_connect_failed; handshake → upstream_tls_failed; body over the limit →
/// upstream_too_large; everything else while writing/reading → upstream_protocol_error.
errc classify(const failure& f) noexcept;

/// The last resumable TLS session of an origin, shared by its connections: a new
/// connection offers it, so the upstream can resume instead of running a full handshake (no
/// certificate signature on its side, no chain verification on ours). Only sessions from
/// handshakes that passed chain and host-name verification for this origin are kept.
/// Thread-safety: any thread.
class tls_session_cache {
public:
    tls_session_cache() = default;
    ~tls_session_cache();
    tls_session_cache(const tls_session_cache&) = delete;
    tls_session_cache& operator=(const tls_session_cache&) = delete;

    /// Before the handshake: offers the kept session to `ssl`, if there is one.
    void offer(ssl_st* ssl) const;
    /// After an exchange: keeps `ssl`'s session if it can be resumed (TLS 1.3 tickets arrive
    /// after the handshake, with the first response).
    void keep(ssl_st* ssl);

private:
    mutable std::mutex mu_;
    ssl_session_st* session_ = nullptr;  // one reference owned; guarded by mu_
};

/// Immutable settings shared by all connections of one origin.
struct connection_options {
    /// Name or address to resolve and connect to.
    std::string host;
    /// TCP port.
    std::uint16_t port = 443;
    /// Name sent as SNI and verified against the certificate; empty means `host`.
    std::string server_name;
    /// The shared client context; null means plaintext (only with an explicit opt-in, which
    /// the client checks).
    std::shared_ptr<asio::ssl::context> tls;
    /// Response line + headers, in bytes.
    std::uint32_t header_limit = 16 * 1024;
    /// Response body, in bytes (config upstream.max_body_bytes).
    std::uint64_t body_limit = 1024 * 1024;
    /// TLS session resumption across the origin's connections; null: every connection runs
    /// a full handshake.
    std::shared_ptr<tls_session_cache> sessions;
};

/// One upstream connection. Created by the pool, shared between the pool's slot and the
/// lease that borrows it.
/// Thread-safety: every member except get_executor(), is_reusable(), requests_served() and
/// resumed() must run on get_executor(), the pool's worker (connect() and exchange() check
/// it in every build), and at most one of connect()/exchange() may be in flight. The pool
/// and the lease guarantee the second rule: the slot state says who owns the stream
/// (connect task, pool or lease holder).
class connection {
public:
    using executor_type = asio::any_io_executor;

    /// `ex` must be a worker's executor (gateway/core/workers.hpp): its one thread
    /// serialises this connection's handlers.
    connection(asio::any_io_executor ex, std::shared_ptr<const connection_options> opts);

    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    executor_type get_executor() const noexcept { return ex_; }

    /// Resolve, connect and handshake; everything must finish by `deadline`. On success the
    /// stream expiry is disarmed (the connection may sit idle in the pool).
    asio::awaitable<boost::system::result<void, failure>> connect(clock::time_point deadline);

    /// Writes `request` (a complete HTTP/1.1 request head, see client::request_bytes) and
    /// reads the complete response; both must finish by `deadline`. `request` must stay
    /// valid until the exchange completes. On any error the connection is closed. On
    /// success the stream expiry is disarmed again.
    asio::awaitable<boost::system::result<response, failure>> exchange(std::string_view request,
                                                                       clock::time_point deadline);

    /// Closes the socket without a TLS close_notify and aborts any pending operation
    /// (see the comment in the definition for why this is safe).
    void close() noexcept;

    /// The last exchange completed, both sides keep-alive, and no unread bytes are left.
    bool is_reusable() const noexcept {
        return reusable_.load(std::memory_order_relaxed) &&
               !closed_.load(std::memory_order_relaxed);
    }

    /// Completed exchanges; readable from any thread.
    std::uint64_t requests_served() const noexcept {
        return requests_served_.load(std::memory_order_relaxed);
    }

    /// The handshake resumed an earlier session; readable from any thread.
    bool resumed() const noexcept { return resumed_.load(std::memory_order_relaxed); }

private:
    beast::tcp_stream& lowest() noexcept;

    executor_type ex_;
    std::shared_ptr<const connection_options> opts_;
    asio::ip::tcp::resolver resolver_;
    std::optional<asio::ssl::stream<beast::tcp_stream>> tls_;  // engaged for https
    std::optional<beast::tcp_stream> plain_;                   // engaged for http
    beast::flat_buffer buffer_;
    // Written on the connection's worker only; atomic so that is_reusable() and the
    // counters stay readable from any thread (the documented exceptions above).
    std::atomic<bool> closed_{false};
    std::atomic<bool> reusable_{false};
    std::atomic<std::uint64_t> requests_served_{0};
    std::atomic<bool> resumed_{false};
    bool session_kept_ = false;  // this connection's session went to opts_->sessions
};

}  // namespace imagegate::upstream
