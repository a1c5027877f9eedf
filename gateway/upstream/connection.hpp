// One upstream connection: resolve + connect + (verified) TLS handshake under one deadline,
// then HTTP/1.1 exchanges (write request, read full response) each under one deadline.
#pragma once

#include "gateway/core/errc.hpp"
#include "gateway/core/net.hpp"
#include "gateway/upstream/forward.hpp"
#include "gateway/upstream/framing.hpp"
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

/// How an answer reached the client: the facts that tie it to the request that produced it.
/// Every answer returned was read on a connection that had no unread byte and was open
/// right before the request was written (a reused one is checked, a fresh one has carried
/// nothing). Why that ties answers to requests, and what it cannot rule out, is argued
/// above connection::exchange() in connection.cpp.
struct exchange_facts {
    /// The request was the first ever written on its connection, so the answer is the first
    /// response the upstream sent on it: the reply to this request (RFC 9112 §9.3, responses
    /// come in request order), unless the upstream sends responses nobody asked for.
    bool fresh_connection = false;
    /// The final response was delimited by Content-Length, chunked coding or a status
    /// without content (RFC 9112 §6.3), not by the connection closing.
    bool framed = false;
    /// HTTP bytes beyond the final response had already arrived when it completed: the
    /// upstream sent more than it was asked for. (The connection is then closed.)
    bool trailing_bytes = false;
    /// Interim (1xx) responses read and discarded before the final one.
    unsigned interim_responses = 0;

    /// Framed, nothing trailing: an answer that may be stored.
    bool clean() const noexcept { return framed && !trailing_bytes; }
    /// Clean and on a fresh connection: certainly the reply to this request, short of an
    /// upstream that lies (which no framing can detect). On a reused connection a stray
    /// response that arrives after the idle check and before our answer is indistinguishable
    /// from it; only a fresh connection rules that out.
    bool certain() const noexcept { return fresh_connection && clean(); }

    friend bool operator==(const exchange_facts&, const exchange_facts&) = default;
};

std::ostream& operator<<(std::ostream& os, const exchange_facts& f);

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
    /// The exchange ran on a connection that had served an exchange before
    /// (`!facts.fresh_connection`).
    bool reused_connection = false;
    /// How the answer reached us; see exchange_facts.
    exchange_facts facts;
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
/// (connect task, pool or lease holder). is_idle_and_open() runs on the pool's worker while
/// no operation is in flight (the connection is idle in the pool).
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
    /// reads the final response, skipping interim 1xx heads (framing.hpp); all of it must
    /// finish by `deadline`. A reused connection is first checked for unread bytes
    /// (framing_error::unread_bytes_before_request, nothing written). `request` must stay
    /// valid until the exchange completes. On any error the connection is closed; on success
    /// it stays open only if may_reuse() holds, with its stream expiry disarmed again.
    asio::awaitable<boost::system::result<response, failure>> exchange(std::string_view request,
                                                                       clock::time_point deadline);

    /// A forwarded call (connection_forward.cpp): writes `head` (a complete request head,
    /// client::forward builds it), then the body pulled from `body` (chunk-framed when
    /// `chunked`), reads the final response head (interim 1xx skipped as in exchange()) and
    /// hands head and body to `sink` as they come; all of it by `deadline`. A failure after
    /// the head reached the sink is not an error: the outcome says the body is incomplete.
    /// An error of `body` is returned as the failure's code, unchanged. `head_request`: the
    /// answer to a HEAD has no body whatever it announces. Reuse as for exchange().
    asio::awaitable<boost::system::result<forward_outcome, failure>> forward(
        std::string_view head, forward_body* body, bool chunked, bool head_request,
        forward_sink& sink, clock::time_point deadline);

    /// Closes the socket without a TLS close_notify and aborts any pending operation
    /// (see the comment in the definition for why this is safe).
    void close() noexcept;

    /// The connection is open and no byte waits unread in its socket (a TLS record such as
    /// close_notify or a stray response shows up there). One FIONREAD ioctl, no TLS state
    /// touched: the pool calls it on an idle connection it owns (from any thread, under its
    /// lock) before lending it, and exchange() again right before writing on a reused one; a
    /// readable idle connection is discarded, never read as the next answer.
    bool is_idle_and_open() noexcept;

    /// The last exchange completed, its response was framed (not close-delimited), both
    /// sides keep-alive, and nothing beyond the response was received (see may_reuse).
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
    template <class Stream>
    asio::awaitable<boost::system::result<forward_outcome, failure>> forward_on(
        Stream& stream, std::string_view head, forward_body* body, bool chunked, bool head_request,
        forward_sink& sink);
    /// Before writing a request: the connection is open and (reused) has nothing unread;
    /// empties the buffer and arms `deadline`. The failure to return otherwise.
    std::optional<failure> begin_exchange(clock::time_point deadline);
    /// After a complete answer: keeps the TLS session, checks for bytes beyond it, decides
    /// reuse (closes otherwise). Returns whether HTTP bytes beyond the answer had arrived.
    bool after_answer(bool keep_alive, bool need_eof);
    beast::tcp_stream& lowest() noexcept;
    /// Sends the ACK of what we read now instead of letting it wait for our next request.
    void acknowledge_now() noexcept;
    /// Something beyond the response waits in the TLS layers or the socket.
    bool has_unread_beyond_buffer() noexcept;
    /// Reads at most one byte of application data without waiting (the TLS layer consumes
    /// any record that is not data, e.g. close_notify); true if there was one.
    bool read_application_byte() noexcept;

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
