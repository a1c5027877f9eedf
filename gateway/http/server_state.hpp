// The listener's shared state (internal to gateway/http): what the owner (server.cpp), the
// accept loop and idle reaper (listener.cpp) and the sessions (session.cpp) all reach.
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/http/accept_guard.hpp"
#include "gateway/http/server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace imagegate::gateway {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace detail {

/// A session's handle for the server: lets stop()/close_all() and the idle reaper reach its
/// socket. `stream` and `busy` are touched only on the session's executor.
struct session_control {
    asio::any_io_executor executor;
    beast::tcp_stream* stream = nullptr;  // the TCP layer (under TLS too); null once ended
    bool busy = false;                    // a request is being answered
    /// While a plain session waits for its next request: when the idle reaper must close it
    /// (steady_clock ticks since its epoch); 0 while it does not wait, `expired` once the
    /// reaper took it. Set and cleared on the session's executor, read by the reaper.
    std::atomic<std::int64_t> idle_deadline{0};
    static constexpr std::int64_t expired = -1;
};

struct server_state {
    server_options opts;
    std::shared_ptr<const router> routes;
    observer_fn observer;
    std::shared_ptr<spdlog::logger> log;
    std::shared_ptr<ssl::context> tls;  // null: plain HTTP
    // Sessions are spread over these in turn; the first also runs the acceptor and reaper.
    std::vector<asio::any_io_executor> executors;
    tcp::acceptor acceptor;
    asio::steady_timer reaper;  // the idle reaper's tick, on the acceptor's executor
    accept_guard guard;         // failed accepts; used on the acceptor's executor
    std::atomic<bool> stopping{false};
    std::atomic<std::size_t> sessions{0};
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> handshake_failures{0};
    // The TLS context new connections use once set_tls_context() replaced `tls` (a reload);
    // sessions keep the context they started with.
    std::mutex tls_mu;
    std::shared_ptr<ssl::context> next_tls;  // guarded by tls_mu
    // The rendered 503 for connections over the limit, up to the X-Request-Id value, and
    // what follows the value.
    std::string refusal;
    std::string refusal_tail;
    // The bound port, kept at start-up: the acceptor itself belongs to its worker (stop()
    // closes it there), so port() must not read it from another thread.
    std::uint16_t bound_port = 0;

    std::mutex mu;
    std::unordered_set<std::shared_ptr<session_control>> controls;  // guarded by mu
    // Signalled when the last session ends (wait_drained); paired with mu.
    std::condition_variable drained;

    server_state(std::vector<asio::any_io_executor> ex, server_options o,
                 std::shared_ptr<const router> h, observer_fn ob, std::shared_ptr<spdlog::logger> l,
                 std::shared_ptr<ssl::context> t)
        : opts(std::move(o)),
          routes(std::move(h)),
          observer(std::move(ob)),
          log(std::move(l)),
          tls(std::move(t)),
          executors(std::move(ex)),
          acceptor(executors.at(0)),
          reaper(executors.at(0)),
          guard(opts.name, log) {}
};

// After the X-Request-Id value: its CRLF, then the Connection header and the blank line.
inline constexpr std::string_view connection_keep_alive = "\r\nConnection: keep-alive\r\n\r\n";
inline constexpr std::string_view connection_close = "\r\nConnection: close\r\n\r\n";
inline constexpr std::string_view request_id_header = "X-Request-Id: ";

}  // namespace detail

}  // namespace imagegate::gateway
