// The listener's background tasks: the accept loop (connection limit and refusal, the spare
// descriptor of accept_guard, spreading sessions over the workers) and the idle reaper.
#include "gateway/http/listener.hpp"
#include "gateway/http/request_id.hpp"

#include "gateway/http/session.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace imagegate::gateway::detail {

namespace {

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

// How often the idle reaper looks: a tenth of the shorter of the two waits it bounds, within
// [1 ms, 250 ms]. A silent connection is closed at most one tick after its deadline.
std::chrono::milliseconds reaper_tick(const server_options& o) {
    const auto shortest = std::min(o.header_timeout, o.idle_timeout);
    return std::clamp(shortest / 10, std::chrono::milliseconds(1), std::chrono::milliseconds(250));
}

}  // namespace

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

void listener_task_done::operator()(const std::exception_ptr& ep) const {
    if (ep) {
        st->log->critical("{} {} ended by exception", st->opts.name, task);
    }
}

}  // namespace imagegate::gateway::detail
