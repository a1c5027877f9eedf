// An HTTP/1.1 listener, plain or over TLS: accepts connections, runs one keep-alive session
// coroutine per connection with deadlines and limits, and hands each request to a handler
// coroutine.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/http/accept_guard.hpp"
#include "gateway/http/listener_tls.hpp"
#include "gateway/http/reply.hpp"
#include "gateway/http/request.hpp"
#include "gateway/http/router.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace spdlog {
class logger;
}

namespace boost::asio::ssl {
class context;
}

namespace imagegate::gateway {

namespace http = boost::beast::http;

/// What the session tells its observer after each response (access log, metrics).
struct exchange_record {
    std::string_view listener;
    std::string_view method;
    std::string_view target;
    std::string_view request_id;
    std::string_view route;
    unsigned status = 0;
    std::string_view cache_status;
    std::chrono::nanoseconds duration{};
    std::size_t bytes_written = 0;
};

struct server_options {
    /// "data" or "admin", for logs and metrics.
    std::string name = "data";
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::uint64_t max_connections = 10000;
    std::uint64_t max_header_bytes = 16 * 1024;
    std::chrono::milliseconds header_timeout{10000};
    std::chrono::milliseconds idle_timeout{60000};
    std::chrono::milliseconds write_timeout{10000};
    /// A request body (routes that take one) must be complete this long after its head (or
    /// after `100 Continue`), however it trickles in; then 408 and the connection closes.
    std::chrono::milliseconds body_timeout{10000};
};

using observer_fn = std::function<void(const exchange_record&)>;

namespace detail {
struct server_state;
}

/// Owns the acceptor and tracks the sessions it spawned. Construct, `start()`, later
/// `stop()` (stop accepting, close idle connections; in-flight requests finish and close),
/// `wait_drained()` and, if they do not finish in time, `close_all()`. Sessions share
/// ownership of the server's state, so the object may be destroyed while sessions unwind.
/// Threading: the acceptor and the idle reaper run on the first of `executors`; accepted
/// connections are spread over all of them in turn, and each session runs on its own
/// executor without a strand. Every executor must be a worker's (gateway/core/workers.hpp:
/// an io_context run by exactly one thread); sessions check this when they start.
/// Thread-safety: all members may be called from any thread, except wait_drained().
class http_server {
public:
    /// Binds and listens at once so that start-up fails loudly (throws std::system_error
    /// naming the address). With `tls` (a server context), every connection first completes
    /// a TLS handshake within `opts.header_timeout`; without it the listener speaks plain
    /// HTTP and no TLS code runs on its path. `executors` must not be empty.
    http_server(std::vector<asio::any_io_executor> executors, server_options opts,
                std::shared_ptr<const router> routes, observer_fn observer,
                std::shared_ptr<spdlog::logger> log,
                std::shared_ptr<asio::ssl::context> tls = nullptr);
    /// A listener whose one handler takes every request (a router with only a fallback: no
    /// 404/405 of its own, no bodies).
    http_server(std::vector<asio::any_io_executor> executors, server_options opts,
                handler_fn handler, observer_fn observer, std::shared_ptr<spdlog::logger> log,
                std::shared_ptr<asio::ssl::context> tls = nullptr);
    ~http_server();
    http_server(const http_server&) = delete;
    http_server& operator=(const http_server&) = delete;

    /// The bound port (useful with port 0).
    std::uint16_t port() const noexcept;
    void start();
    void stop();
    void close_all();
    /// Sessions still open.
    std::size_t active_sessions() const noexcept;
    /// Blocks until no session is open (true) or `deadline` passed (false). Call after
    /// stop(), from a thread that is not a worker: the sessions it waits for need theirs.
    bool wait_drained(std::chrono::steady_clock::time_point deadline) const;
    /// Connections refused because max_connections was reached, or while descriptors ran
    /// out (see accept_guard).
    std::uint64_t refused_connections() const noexcept;
    /// Failed accepts by cause.
    accept_error_counts accept_errors() const noexcept;
    /// Whether connections speak TLS.
    bool is_tls() const noexcept;
    /// A TLS listener's new certificate and key (a reload): handshakes from now on use `tls`,
    /// connections already open keep theirs. Any thread.
    void set_tls_context(std::shared_ptr<asio::ssl::context> tls);
    /// TLS handshakes that failed or timed out (plain HTTP or garbage on a TLS port, an
    /// untrusting client, a client that stalls mid-hello).
    std::uint64_t tls_handshake_failures() const noexcept;

private:
    std::shared_ptr<detail::server_state> state_;
};

}  // namespace imagegate::gateway
