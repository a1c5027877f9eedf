#include "gateway/http/server.hpp"

#include "gateway/http/request_head.hpp"
#include "gateway/http/request_id.hpp"
#include "gateway/http/accept_guard.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/throw_exception.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <unordered_set>

namespace imagegate::gateway {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using tls_stream = ssl::stream<beast::tcp_stream>;

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
    handler_fn handler;
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

    server_state(std::vector<asio::any_io_executor> ex, server_options o, handler_fn h,
                 observer_fn ob, std::shared_ptr<spdlog::logger> l, std::shared_ptr<ssl::context> t)
        : opts(std::move(o)),
          handler(std::move(h)),
          observer(std::move(ob)),
          log(std::move(l)),
          tls(std::move(t)),
          executors(std::move(ex)),
          acceptor(executors.at(0)),
          reaper(executors.at(0)),
          guard(opts.name, log) {}
};

}  // namespace detail

namespace {

using detail::server_state;
using detail::session_control;

// After the X-Request-Id value: its CRLF, then the Connection header and the blank line.
constexpr std::string_view connection_keep_alive = "\r\nConnection: keep-alive\r\n\r\n";
constexpr std::string_view connection_close = "\r\nConnection: close\r\n\r\n";
constexpr std::string_view request_id_header = "X-Request-Id: ";

// How long a TLS session waits for the client's close_notify after sending its own (capped
// by server.write_timeout). The answer is already written; this only bounds the courtesy.
constexpr std::chrono::milliseconds tls_shutdown_timeout{1000};

// Registers the session for stop()/close_all() and unregisters it on every exit path.
class session_registration {
public:
    session_registration(std::shared_ptr<server_state> st, asio::any_io_executor ex,
                         beast::tcp_stream& stream)
        : st_(std::move(st)), ctl_(std::make_shared<session_control>()) {
        // Without strands a session's steps are serialised only by its executor's one thread.
        IMAGEGATE_CHECK(runs_on_this_worker(ex), "a session runs on a worker's executor");
        ctl_->executor = std::move(ex);
        ctl_->stream = &stream;
        st_->sessions.fetch_add(1, std::memory_order_relaxed);
        const std::lock_guard lock(st_->mu);
        st_->controls.insert(ctl_);
    }
    ~session_registration() {
        ctl_->stream = nullptr;
        const std::lock_guard lock(st_->mu);
        st_->controls.erase(ctl_);
        // Under mu, so that wait_drained() cannot miss the last session's end.
        if (st_->sessions.fetch_sub(1, std::memory_order_relaxed) == 1) {
            st_->drained.notify_all();
        }
    }
    session_registration(const session_registration&) = delete;
    session_registration& operator=(const session_registration&) = delete;

    void set_busy(bool busy) noexcept { ctl_->busy = busy; }
    session_control& control() noexcept { return *ctl_; }

private:
    std::shared_ptr<server_state> st_;
    std::shared_ptr<session_control> ctl_;
};

bool is_benign(const boost::system::error_code& ec) {
    return ec == beast::error::timeout || ec == asio::error::eof ||
           ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
           ec == asio::error::bad_descriptor || ec == http::error::end_of_stream ||
           ec == asio::error::broken_pipe || ec == ssl::error::stream_truncated;
}

// The session code below is written once for any Stream whose lowest layer is a
// beast::tcp_stream (deadlines live there) and instantiated for exactly two types in this
// file: beast::tcp_stream (plain) and ssl::stream<beast::tcp_stream> (TLS). The plain
// instantiation is the code that ran before TLS existed: no wrapper, no runtime branch.

using reply_buffers = std::array<asio::const_buffer, 6>;

// `r` and the request's id as one buffer sequence (headers only for HEAD).
reply_buffers buffers_of(const reply& r, std::string_view id, bool head_only, bool close) {
    const std::string_view conn = close ? connection_close : connection_keep_alive;
    const std::string_view body = head_only ? std::string_view{} : r.body();
    return {asio::buffer(r.prepared_head.data(), r.prepared_head.size()),
            asio::buffer(r.head.data(), r.head.size()),
            asio::buffer(request_id_header.data(), request_id_header.size()),
            asio::buffer(id.data(), id.size()),
            asio::buffer(conn.data(), conn.size()),
            asio::buffer(body.data(), body.size())};
}

// Plain connections: an answer almost always fits the socket's send buffer, so one
// non-blocking sendmsg, with no asynchronous operation, no deadline timer armed and
// cancelled, no completion handler and no coroutine frame. Returns the bytes the kernel
// took, or nothing on an error. The socket is non-blocking (run_plain_session).
std::optional<std::size_t> write_now(beast::tcp_stream& stream, const reply_buffers& buffers) {
    boost::system::error_code ec;
    const std::size_t sent = stream.socket().write_some(buffers, ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        return std::nullopt;
    }
    return sent;
}

// Writes `buffers` from byte `sent` on under the write deadline (all of it over TLS, the rest
// of what write_now left on a plain connection). Returns all bytes written, or 0. Over TLS,
// Asio linearises the buffer sequence into one record (up to 8 KiB).
template <class Stream>
asio::awaitable<std::size_t> write_rest(Stream& stream, reply_buffers buffers, std::size_t sent,
                                        std::chrono::milliseconds timeout) {
    beast::buffers_suffix<reply_buffers> rest(buffers);
    rest.consume(sent);
    beast::get_lowest_layer(stream).expires_after(timeout);
    auto [ec, n] = co_await asio::async_write(stream, rest, use_nothrow);
    if (ec) {
        co_return 0;
    }
    co_return sent + n;
}

// Watches a client's socket while its request is being answered: a client that hangs up
// (FIN or reset) cancels the handler, which then leaves its flight, so a fetch nobody waits
// for any more gives its budget slot back. Bytes the client sends meanwhile (a pipelined
// request, TLS records such as close_notify) cannot be told from a live client: the watch
// then stops. It never reads: the bytes stay for the next request. A plain completion
// handler rather than a coroutine racing the handler: the miss path pays one socket wait.
struct peer_watch {
    asio::cancellation_signal signal;
    bool answered = false;  // the handler finished: the socket may be gone, touch nothing
    bool gone = false;
};

struct peer_watch_handler {
    std::shared_ptr<peer_watch> watch;
    tcp::socket* socket;  // valid while !watch->answered (same executor as the session)

    void operator()(const boost::system::error_code& ec) const {
        if (watch->answered || ec == asio::error::operation_aborted) {
            return;
        }
        if (!ec) {
            char byte = 0;
            boost::system::error_code peek_ec;
            const std::size_t n =
                socket->receive(asio::buffer(&byte, 1), tcp::socket::message_peek, peek_ec);
            if (peek_ec == asio::error::would_block || peek_ec == asio::error::try_again) {
                socket->async_wait(tcp::socket::wait_read, *this);  // spurious readiness
                return;
            }
            if (!peek_ec && n > 0) {
                return;  // data: a live client as far as we can tell
            }
        }
        watch->gone = true;  // EOF, reset, or the socket closed under us
        watch->signal.emit(asio::cancellation_type::terminal);
    }
};

// Arms the watch for one handler call; ends it on every exit (the answer, or a throw).
class peer_watch_scope {
public:
    explicit peer_watch_scope(tcp::socket& socket)
        : socket_(socket), watch_(std::make_shared<peer_watch>()) {
        socket_.async_wait(tcp::socket::wait_read, peer_watch_handler{watch_, &socket_});
    }
    ~peer_watch_scope() {
        watch_->answered = true;
        boost::system::error_code ignored;
        socket_.cancel(ignored);  // the pending wait, if any: it completes as aborted
    }
    peer_watch_scope(const peer_watch_scope&) = delete;
    peer_watch_scope& operator=(const peer_watch_scope&) = delete;

    asio::cancellation_slot slot() const { return watch_->signal.slot(); }
    bool gone() const { return watch_->gone; }

private:
    tcp::socket& socket_;
    std::shared_ptr<peer_watch> watch_;
};

// Feeds the buffered bytes to `parser` (put_head: Beast's parser plus our raw-head checks):
// the result once the head is complete or wrong, nothing while more bytes are needed. A
// plain function, so a head that arrived whole (the usual case) costs no coroutine frame.
// What the parser took is consumed even when it asks for more: Beast parses a complete
// request line (and complete fields) as soon as it sees them, so handing those bytes over
// again would parse the request line as a field.
std::optional<boost::system::error_code> parse_buffered(
    beast::flat_buffer& buffer, http::request_parser<http::empty_body>& parser) {
    while (buffer.size() > 0) {
        boost::system::error_code ec;
        const std::size_t used = put_head(parser, buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) {
            return std::nullopt;
        }
        if (ec || parser.is_header_done()) {
            return ec;
        }
    }
    return std::nullopt;
}

// Reads one request head into `parser`, feeding it from `buffer` ourselves so the raw head
// bytes can be checked before they are consumed. Beast's parser takes a head only once it is
// complete, so the bytes consumed by a successful put() are exactly the head.
template <class Stream>
asio::awaitable<boost::system::error_code> read_header(
    Stream& stream, beast::flat_buffer& buffer, http::request_parser<http::empty_body>& parser) {
    for (;;) {
        if (auto done = parse_buffered(buffer, parser)) {
            co_return *done;
        }
        if (buffer.size() >= buffer.max_size()) {
            co_return http::make_error_code(http::error::header_limit);
        }
        const std::size_t room = std::min<std::size_t>(4096, buffer.max_size() - buffer.size());
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(room), use_nothrow);
        if (ec) {
            // EOF before any byte of a request is a clean close, mid-head a partial message.
            if (ec == asio::error::eof) {
                co_return parser.got_some() || buffer.size() > 0
                    ? http::make_error_code(http::error::partial_message)
                    : http::make_error_code(http::error::end_of_stream);
            }
            co_return ec;
        }
        buffer.commit(n);
    }
}

// The keep-alive loop of one connection. Returns true when it ended by writing an answer
// marked `Connection: close` (the caller then ends the connection in order), false when the
// peer left, a deadline passed, a write failed or the server closed the socket.
//
// A request head must be complete by one absolute deadline, never restarted while it
// trickles in: `first_head_deadline` (accept + server.header_timeout, the TLS handshake
// included) for the first request, and its first byte + server.header_timeout for every
// later one.
template <class Stream>
asio::awaitable<bool> serve_requests(std::shared_ptr<server_state> st, Stream& stream,
                                     session_registration& reg,
                                     std::chrono::steady_clock::time_point first_head_deadline) {
    const auto& o = st->opts;
    auto& lowest = beast::get_lowest_layer(stream);
    // Room for one maximal header plus some pipelined bytes.
    beast::flat_buffer buffer(static_cast<std::size_t>(o.max_header_bytes) + 8192);
    bool first = true;
    request_id_buffer id_buf;

    for (;;) {
        if (buffer.size() == 0) {
            // Between requests: the connection is idle, stop() may close it.
            reg.set_busy(false);
            if (st->stopping.load(std::memory_order_relaxed)) {
                co_return false;
            }
            const auto wait_until =
                first ? first_head_deadline : std::chrono::steady_clock::now() + o.idle_timeout;
            std::size_t n = 0;
            if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
                // The idle reaper bounds this wait (see idle_reaper): a read on the socket
                // itself, without arming and cancelling the stream's deadline timer per
                // request.
                auto& deadline = reg.control().idle_deadline;
                deadline.store(wait_until.time_since_epoch().count(), std::memory_order_relaxed);
                auto [ec, got] =
                    co_await stream.socket().async_read_some(buffer.prepare(4096), use_nothrow);
                deadline.store(0, std::memory_order_relaxed);
                if (ec) {
                    co_return false;  // peer left, reaped (the socket was closed) or stopped
                }
                n = got;
            } else {
                lowest.expires_at(wait_until);
                auto [ec, got] = co_await stream.async_read_some(buffer.prepare(4096), use_nothrow);
                if (ec) {
                    co_return false;
                }
                n = got;
            }
            buffer.commit(n);
        }
        reg.set_busy(true);
        const auto started = std::chrono::steady_clock::now();
        // The first byte of this request is here (read just now, or pipelined behind the
        // previous one).
        const auto head_deadline = first ? first_head_deadline : started + o.header_timeout;
        first = false;

        http::request_parser<http::empty_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(o.max_header_bytes));
        auto rec = parse_buffered(buffer, parser).value_or(boost::system::error_code{});
        if (!parser.is_header_done() && !rec) {
            lowest.expires_at(head_deadline);
            rec = co_await read_header(stream, buffer, parser);
        }

        reply r;
        request req;
        req.id = request_id_for(parser.is_header_done() ? &parser.get().base() : nullptr, id_buf);
        bool close = false;
        bool gone = false;  // the client hung up while its answer was being prepared
        if (rec) {
            const auto e = classify_read_error(rec);
            if (!e) {
                // A runtime level check (SPDLOG_LOGGER_DEBUG compiles out unless
                // SPDLOG_ACTIVE_LEVEL is lowered, so --log-level debug never showed this).
                if (!is_benign(rec) && st->log->should_log(spdlog::level::debug)) {
                    st->log->debug("{} session read failed: {}:{} {}", o.name,
                                   rec.category().name(), rec.value(), rec.message());
                }
                co_return false;
            }
            r = make_error_reply(*e);
            r.route = "invalid";
            close = true;
        } else if (const auto bad = check_request(parser)) {
            r = make_error_reply(*bad);
            r.route = "invalid";
            close = true;
            req.method = parser.get().method();
            req.target = parser.get().target();
        } else {
            const auto& msg = parser.get();
            req.method = msg.method();
            req.target = msg.target();
            req.headers = &msg.base();
            req.head_only = msg.method() == http::verb::head;
            bool failed = false;
            try {
                handler_result handled = st->handler(req);
                if (auto* ready = std::get_if<reply>(&handled)) {
                    r = std::move(*ready);
                } else {
                    auto& socket = lowest.socket();
                    const peer_watch_scope watch(socket);
                    auto ex = co_await asio::this_coro::executor;
                    r = co_await asio::co_spawn(
                        ex, std::move(std::get<asio::awaitable<reply>>(handled)),
                        asio::bind_cancellation_slot(watch.slot(), use_awaitable));
                    gone = watch.gone();
                }
            } catch (const std::exception& e) {
                st->log->error("{} handler threw: {} (request {})", o.name, e.what(), req.id);
                failed = true;
            }
            if (failed) {
                r = make_error_reply(errc::internal_error);
                r.close = true;
            }
            close = r.close || !msg.keep_alive() || st->stopping.load(std::memory_order_relaxed);
        }

        if (gone) {
            // Nothing to write to. 499 as nginx logs it ("client closed request").
            r.status = 499;
            r.cache_status = "client-gone";
        }
        const reply_buffers out = buffers_of(r, req.id, req.head_only, close);
        std::size_t written = 0;
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            if (const auto sent = gone ? std::nullopt : write_now(stream, out)) {
                written = *sent;
                if (written < asio::buffer_size(out)) {
                    written = co_await write_rest(stream, out, written, o.write_timeout);
                }
            }
        } else if (!gone) {
            written = co_await write_rest(stream, out, 0, o.write_timeout);
        }
        if (st->observer) {
            exchange_record rec_out;
            rec_out.listener = o.name;
            rec_out.method =
                rec ? std::string_view{"-"} : std::string_view(http::to_string(req.method));
            rec_out.target = req.target;
            rec_out.request_id = req.id;
            rec_out.route = r.route;
            rec_out.status = r.status;
            rec_out.cache_status = r.cache_status;
            rec_out.duration = std::chrono::steady_clock::now() - started;
            rec_out.bytes_written = written;
            st->observer(rec_out);
        }
        if (written == 0 || close) {
            co_return written != 0;
        }
    }
}

asio::awaitable<void> run_plain_session(std::shared_ptr<server_state> st, tcp::socket socket) {
    const auto head_deadline = std::chrono::steady_clock::now() + st->opts.header_timeout;
    beast::tcp_stream stream(std::move(socket));
    {
        // write_now() writes directly; it must never block the thread.
        boost::system::error_code ignored;
        stream.socket().non_blocking(true, ignored);
    }
    session_registration reg(st, stream.get_executor(), stream);
    const bool answered_close = co_await serve_requests(st, stream, reg, head_deadline);
    boost::system::error_code ignored;
    if (answered_close) {
        // Half-close so the client reads the whole answer before it sees EOF.
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
    stream.socket().close(ignored);
}

// A TLS connection: the handshake and the first request head together must complete within
// header_timeout of the accept, as the first head alone must on a plain connection, so a
// client that connects and stalls (or sends half a ClientHello) holds a connection slot no
// longer than one that stalls in plain HTTP. Registered before the handshake, so stop()
// closes connections still handshaking and max_connections counts them.
asio::awaitable<void> run_tls_session(std::shared_ptr<server_state> st,
                                      std::shared_ptr<ssl::context> tls, tcp::socket socket) {
    tls_stream stream(std::move(socket), *tls);
    auto& lowest = beast::get_lowest_layer(stream);
    session_registration reg(st, lowest.get_executor(), lowest);
    boost::system::error_code ignored;

    // One deadline for the handshake and the first request head together.
    const auto head_deadline = std::chrono::steady_clock::now() + st->opts.header_timeout;
    lowest.expires_at(head_deadline);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (hec) {
        // Plain HTTP or garbage on this port, a client that does not trust our certificate,
        // a slow or half hello: routine on an exposed port, so debug only, but counted.
        if (!st->stopping.load(std::memory_order_relaxed)) {
            st->handshake_failures.fetch_add(1, std::memory_order_relaxed);
        }
        // A runtime level check, not SPDLOG_LOGGER_DEBUG: that macro is compiled out unless
        // SPDLOG_ACTIVE_LEVEL is lowered, and this path is never hot.
        if (st->log->should_log(spdlog::level::debug)) {
            const auto peer = lowest.socket().remote_endpoint(ignored);
            st->log->debug("{} TLS handshake from {}:{} failed: {}:{} {}", st->opts.name,
                           peer.address().to_string(), peer.port(), hec.category().name(),
                           hec.value(), hec.message());
        }
        lowest.socket().close(ignored);
        co_return;
    }

    const bool answered_close = co_await serve_requests(st, stream, reg, head_deadline);
    if (answered_close) {
        // close_notify (RFC 8446 §6.1) lets the client tell a complete answer from a cut one.
        // Asio then waits for the client's close_notify or EOF: bounded, never a hang.
        lowest.expires_after(std::min(st->opts.write_timeout, tls_shutdown_timeout));
        auto [sec] = co_await stream.async_shutdown(use_nothrow);
        (void)sec;  // the answer is written; how the client ends the connection is its affair
    }
    lowest.socket().close(ignored);
}

// Completion handler of a session: a session that throws is a bug; log it and go on.
struct session_done {
    std::shared_ptr<server_state> st;
    void operator()(const std::exception_ptr& ep) const {
        if (!ep) {
            return;
        }
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            st->log->error("{} session ended by exception: {}", st->opts.name, e.what());
        } catch (...) {
            st->log->error("{} session ended by unknown exception", st->opts.name);
        }
    }
};

// Over max_connections: a best-effort, non-blocking write of a fixed answer before closing,
// so a client sees why instead of a bare reset; never waits on the client. A TLS listener
// just closes: plain text on a TLS port is a handshake error to the client, not an answer.
void refuse(tcp::socket& socket, const server_state& st) {
    boost::system::error_code ec;
    if (!st.tls) {
        request_id_buffer id_buf;
        const std::string_view id = generate_request_id(id_buf);
        const std::array<asio::const_buffer, 3> answer{asio::buffer(st.refusal),
                                                       asio::buffer(id.data(), id.size()),
                                                       asio::buffer(st.refusal_tail)};
        socket.non_blocking(true, ec);
        socket.write_some(answer, ec);
        socket.shutdown(tcp::socket::shutdown_send, ec);
    }
    socket.close(ec);
}

// Takes one pending connection off the backlog without waiting (the acceptor is
// non-blocking) and refuses it as over max_connections.
void refuse_one_pending(server_state& st) {
    tcp::socket socket(st.acceptor.get_executor());
    boost::system::error_code ec;
    st.acceptor.accept(socket, ec);
    if (!ec) {
        st.refused.fetch_add(1, std::memory_order_relaxed);
        refuse(socket, st);
    }
}

asio::awaitable<void> accept_loop(std::shared_ptr<server_state> st) {
    asio::steady_timer backoff(st->acceptor.get_executor());
    const auto& spread = st->executors;
    std::size_t next = 0;
    for (;;) {
        // Each session's own executor: the next worker in turn.
        const asio::any_io_executor& ex = spread[next];
        next = (next + 1) % spread.size();
        auto [ec, socket] = co_await st->acceptor.async_accept(ex, use_nothrow);
        if (st->stopping.load(std::memory_order_relaxed) || ec == asio::error::operation_aborted) {
            co_return;
        }
        if (ec == asio::error::connection_aborted) {
            continue;  // the client reset the connection before we took it: nothing to do
        }
        if (ec) {
            // Out of descriptors: the spare one lets us take one pending connection and
            // refuse it at once (503 on plain HTTP), so clients are not left waiting in the
            // backlog; then try the next. Open sessions go on meanwhile. Otherwise, or when
            // the spare is gone too, back off briefly instead of spinning.
            const bool exhausted = st->guard.on_failure(ec);
            if (exhausted && st->guard.spend_reserve([&st] { refuse_one_pending(*st); })) {
                continue;
            }
            backoff.expires_after(std::chrono::milliseconds(50));
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        st->guard.on_success();
        if (st->sessions.load(std::memory_order_relaxed) >= st->opts.max_connections) {
            st->refused.fetch_add(1, std::memory_order_relaxed);
            refuse(socket, *st);
            continue;
        }
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        if (st->tls) {
            std::shared_ptr<ssl::context> tls = st->tls;
            {
                const std::lock_guard lock(st->tls_mu);
                tls = st->next_tls ? st->next_tls : tls;
            }
            asio::co_spawn(ex, run_tls_session(st, std::move(tls), std::move(socket)),
                           session_done{st});
        } else {
            asio::co_spawn(ex, run_plain_session(st, std::move(socket)), session_done{st});
        }
    }
}

// How often the idle reaper looks: a tenth of the shorter of the two waits it bounds, within
// [1 ms, 250 ms]. A silent connection is closed at most one tick after its deadline.
std::chrono::milliseconds reaper_tick(const server_options& o) {
    const auto shortest = std::min(o.header_timeout, o.idle_timeout);
    return std::clamp(shortest / 10, std::chrono::milliseconds(1), std::chrono::milliseconds(250));
}

// Closes plain sessions that waited for their next request past their deadline
// (server.header_timeout before the first request, server.idle_timeout between requests).
// One timer for the whole listener instead of a deadline timer armed and cancelled per
// request (about 10 % of a cache hit's instructions). The close runs on the session's own
// executor and only if the session is still in that same wait, so a request that arrived in
// the meantime is served.
asio::awaitable<void> idle_reaper(std::shared_ptr<server_state> st) {
    const auto tick = reaper_tick(st->opts);
    for (;;) {
        st->reaper.expires_after(tick);
        auto [ec] = co_await st->reaper.async_wait(use_nothrow);
        if (ec || st->stopping.load(std::memory_order_relaxed)) {
            co_return;
        }
        const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        const std::lock_guard lock(st->mu);
        for (const auto& ctl : st->controls) {
            auto d = ctl->idle_deadline.load(std::memory_order_relaxed);
            if (d <= 0 || d > now ||
                !ctl->idle_deadline.compare_exchange_strong(d, session_control::expired,
                                                            std::memory_order_relaxed)) {
                continue;
            }
            asio::post(ctl->executor, [ctl] {
                // Still the wait the reaper saw: a session that got its request cleared or
                // re-armed the deadline on this executor before this ran.
                if (ctl->stream != nullptr && ctl->idle_deadline.load(std::memory_order_relaxed) ==
                                                  session_control::expired) {
                    boost::system::error_code ignored;
                    ctl->stream->socket().close(ignored);
                }
            });
        }
    }
}

// Completion of the accept loop and of the idle reaper: both end only on stop() unless a
// bug throws.
struct listener_task_done {
    std::shared_ptr<server_state> st;
    const char* task;
    void operator()(const std::exception_ptr& ep) const {
        if (ep) {
            st->log->critical("{} {} ended by exception", st->opts.name, task);
        }
    }
};

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

http_server::http_server(std::vector<asio::any_io_executor> executors, server_options opts,
                         handler_fn handler, observer_fn observer,
                         std::shared_ptr<spdlog::logger> log, std::shared_ptr<ssl::context> tls)
    : state_(std::make_shared<server_state>(std::move(executors), std::move(opts),
                                            std::move(handler), std::move(observer), std::move(log),
                                            std::move(tls))) {
    auto& st = *state_;
    {
        const reply r = make_error_reply(errc::too_many_connections);
        st.refusal = r.head.view();
        st.refusal += request_id_header;
        st.refusal_tail = connection_close;
        st.refusal_tail += r.body();
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(st.opts.host, ec);
    if (ec) {
        throw std::system_error(ec, "cannot listen on " + st.opts.host + ":" +
                                        std::to_string(st.opts.port) + ": bad address");
    }
    const tcp::endpoint ep(address, st.opts.port);
    auto fail = [&](const char* what) {
        if (ec) {
            throw std::system_error(ec, std::string("cannot listen on ") + st.opts.host + ":" +
                                            std::to_string(st.opts.port) + " (" + what + ")");
        }
    };
    st.acceptor.open(ep.protocol(), ec);
    fail("open");
    st.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    fail("SO_REUSEADDR");
    st.acceptor.bind(ep, ec);
    fail("bind");
    st.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    fail("listen");
    // For refuse_one_pending's synchronous accept; asynchronous accepts are unaffected.
    st.acceptor.non_blocking(true, ec);
    fail("non-blocking");
    const auto bound = st.acceptor.local_endpoint(ec);
    fail("local_endpoint");
    st.bound_port = bound.port();
}

http_server::~http_server() { stop(); }

std::uint16_t http_server::port() const noexcept { return state_->bound_port; }

void http_server::start() {
    asio::co_spawn(state_->acceptor.get_executor(), accept_loop(state_),
                   listener_task_done{state_, "accept loop"});
    asio::co_spawn(state_->acceptor.get_executor(), idle_reaper(state_),
                   listener_task_done{state_, "idle reaper"});
}

void http_server::stop() {
    auto st = state_;
    if (st->stopping.exchange(true)) {
        return;
    }
    asio::post(st->acceptor.get_executor(), [st] {
        boost::system::error_code ignored;
        st->acceptor.close(ignored);
        st->reaper.cancel();
    });
    const std::lock_guard lock(st->mu);
    for (const auto& ctl : st->controls) {
        asio::post(ctl->executor, [ctl] {
            if (ctl->stream != nullptr && !ctl->busy) {
                boost::system::error_code ignored;
                ctl->stream->socket().close(ignored);
            }
        });
    }
}

void http_server::close_all() {
    stop();
    auto st = state_;
    const std::lock_guard lock(st->mu);
    for (const auto& ctl : st->controls) {
        asio::post(ctl->executor, [ctl] {
            if (ctl->stream != nullptr) {
                boost::system::error_code ignored;
                ctl->stream->socket().close(ignored);
            }
        });
    }
}

std::size_t http_server::active_sessions() const noexcept {
    return state_->sessions.load(std::memory_order_relaxed);
}

bool http_server::wait_drained(std::chrono::steady_clock::time_point deadline) const {
    IMAGEGATE_CHECK(!on_worker_thread(), "a worker waited for the sessions to drain");
    auto& st = *state_;
    std::unique_lock lock(st.mu);
    return st.drained.wait_until(
        lock, deadline, [&st] { return st.sessions.load(std::memory_order_relaxed) == 0; });
}

std::uint64_t http_server::refused_connections() const noexcept {
    return state_->refused.load(std::memory_order_relaxed);
}

bool http_server::is_tls() const noexcept { return state_->tls != nullptr; }

void http_server::set_tls_context(std::shared_ptr<ssl::context> tls) {
    IMAGEGATE_CHECK(is_tls() && tls != nullptr, "a TLS listener gets another TLS context");
    const std::lock_guard lock(state_->tls_mu);
    state_->next_tls = std::move(tls);
}

accept_error_counts http_server::accept_errors() const noexcept { return state_->guard.counts(); }

std::uint64_t http_server::tls_handshake_failures() const noexcept {
    return state_->handshake_failures.load(std::memory_order_relaxed);
}

}  // namespace imagegate::gateway
