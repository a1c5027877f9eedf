// One connection's life: the TLS handshake when the listener speaks TLS, the keep-alive
// loop (read a head under its deadline, hand it to the handler while watching for a hang-up,
// write the reply, observe), and the orderly close. Registers itself for stop()/close_all().
#include "gateway/http/session.hpp"
#include "gateway/http/request_id.hpp"

#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/http/peer_watch.hpp"
#include "gateway/http/request_head.hpp"
#include "gateway/http/session_body.hpp"
#include "gateway/http/session_io.hpp"
#include "gateway/http/session_stream.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <type_traits>

namespace imagegate::gateway::detail {

namespace {

using tls_stream = ssl::stream<beast::tcp_stream>;

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
    // Once per connection: whether the client is on this host (forwarding grants may differ).
    bool loopback_peer = false;
    {
        boost::system::error_code pec;
        const auto peer = lowest.socket().remote_endpoint(pec);
        loopback_peer = !pec && peer.address().is_loopback();
    }

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
        // The route's body policy decides (refuse_body, then the body's own parser); Beast's
        // default of 1 MB would refuse a declared upload as a malformed head.
        parser.body_limit(boost::none);
        auto rec = parse_buffered(buffer, parser).value_or(boost::system::error_code{});
        if (!parser.is_header_done() && !rec) {
            lowest.expires_at(head_deadline);
            rec = co_await read_header(stream, buffer, parser);
        }

        reply r;
        request req;
        req.loopback_peer = loopback_peer;
        // Every answer carries one, refusals of a broken head too (request_id.hpp).
        req.id = request_id_for(parser.is_header_done() ? &parser.get().base() : nullptr, id_buf);
        bool close = false;
        bool gone = false;                // the client hung up while its answer was being prepared
        bool written_by_handler = false;  // a streamed reply: the handler wrote it
        std::uint64_t streamed_written = 0;
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
        } else if (const auto bad = check_framing(parser)) {
            r = make_error_reply(*bad);
            r.route = "invalid";
            close = true;
            req.method = parser.get().method();
            req.target = parser.get().target();
        } else {
            const router& routes = *st->routes;
            req.method = parser.get().method();
            req.target = parser.get().target();
            req.headers = &parser.get().base();
            req.head_only = req.method == http::verb::head;
            const bool keep_alive = parser.get().keep_alive();
            const router::decision d = routes.decide(req.method, req.target);
            // A body is read whole before the handler runs, streamed to it (routes that
            // stream), or refused (the connection then closes: its unread bytes are not a
            // request). Nothing of this on a bodiless GET.
            std::optional<http::request_parser<http::string_body>> with_body;
            std::optional<streamed_body<Stream>> streamed;
            std::optional<errc> refused;
            if (has_body(parser)) {
                refused = refuse_body(d, parser);
                if (!refused) {
                    const auto& policy = d.found->options.body;
                    const bool send_continue = expects_continue(parser) && buffer.size() == 0;
                    const auto body_deadline =
                        std::chrono::steady_clock::now() +
                        (policy.timeout.count() > 0 ? policy.timeout : o.body_timeout);
                    if (policy.streaming) {
                        streamed.emplace(stream, buffer, std::move(parser), policy.max_bytes,
                                         send_continue, body_deadline, o.write_timeout);
                        req.target = streamed->message().target();
                        req.headers = &streamed->message().base();
                        req.body_stream = &*streamed;
                    } else {
                        with_body.emplace(std::move(parser));
                        with_body->body_limit(policy.max_bytes);
                        const auto bec =
                            co_await read_body(stream, buffer, *with_body, send_continue,
                                               body_deadline, o.write_timeout);
                        if (bec) {
                            refused = classify_body_error(bec);
                            if (!refused) {
                                co_return false;  // the client left mid-body: nobody to answer
                            }
                        }
                        const auto& msg = with_body->get();
                        req.target = msg.target();
                        req.headers = &msg.base();
                        req.body = msg.body();
                    }
                }
            }
            // A route that streams its answer writes it itself; Connection is decided now.
            std::optional<streamed_reply<Stream>> out_stream;
            if (!refused && d.found != nullptr && d.found->options.body.streaming_reply) {
                out_stream.emplace(stream, req.id, req.head_only,
                                   !keep_alive || st->stopping.load(std::memory_order_relaxed),
                                   o.write_timeout);
                req.reply_out = &*out_stream;
            }
            bool failed = false;
            if (refused) {
                r = make_error_reply(*refused);
                r.route = "invalid";
                close = true;
            } else {
                try {
                    handler_result handled = routes.run(d, req);
                    if (auto* ready = std::get_if<reply>(&handled)) {
                        r = std::move(*ready);
                    } else if (streamed) {
                        // The body source reads the socket: no hang-up watch beside it (a
                        // client that leaves fails the next pull or write instead).
                        r = co_await std::move(std::get<asio::awaitable<reply>>(handled));
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
                close = r.close || !keep_alive || st->stopping.load(std::memory_order_relaxed);
                if (streamed && !streamed->done()) {
                    // What the handler left unread is read and discarded (limit and deadline
                    // still apply) so the next request starts where it should; a client still
                    // waiting for 100 Continue never sends it: close instead.
                    if (!streamed->failed() && !streamed->awaiting_continue()) {
                        for (;;) {
                            auto got = co_await streamed->next();
                            if (!got || got->empty()) {
                                break;
                            }
                        }
                    }
                    close = close || !streamed->done();
                }
            }
            if (out_stream && out_stream->started()) {
                // Written by the handler: never a second response. A body that could not be
                // completed ends the connection, so the client sees it was cut.
                close = close || !out_stream->complete();
                streamed_written = out_stream->bytes_written();
                written_by_handler = true;
            }
        }

        if (gone) {
            // Nothing to write to. 499 as nginx logs it ("client closed request").
            r.status = 499;
            r.cache_status = "client-gone";
        }
        const reply_buffers out = buffers_of(r, req.id, req.head_only, close);
        std::size_t written = 0;
        if (written_by_handler) {
            written = static_cast<std::size_t>(streamed_written);
        } else if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
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

}  // namespace

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

void session_done::operator()(const std::exception_ptr& ep) const {
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

}  // namespace imagegate::gateway::detail
