// The listener's owner: binds the acceptor, starts the accept loop and the idle reaper
// (listener.cpp), stops and drains the sessions (session.cpp), and reports its counters.
#include "gateway/http/server.hpp"

#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/http/listener.hpp"
#include "gateway/http/server_state.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <system_error>

namespace imagegate::gateway {

namespace {

using detail::connection_close;
using detail::request_id_header;
using detail::server_state;

}  // namespace

namespace {

std::shared_ptr<const router> fallback_only(handler_fn handler) {
    auto r = std::make_shared<router>();
    r->set_fallback([h = std::move(handler)](const request& req) { return h(req); });
    return r;
}

}  // namespace

http_server::http_server(std::vector<asio::any_io_executor> executors, server_options opts,
                         handler_fn handler, observer_fn observer,
                         std::shared_ptr<spdlog::logger> log, std::shared_ptr<ssl::context> tls)
    : http_server(std::move(executors), std::move(opts), fallback_only(std::move(handler)),
                  std::move(observer), std::move(log), std::move(tls)) {}

http_server::http_server(std::vector<asio::any_io_executor> executors, server_options opts,
                         std::shared_ptr<const router> routes, observer_fn observer,
                         std::shared_ptr<spdlog::logger> log, std::shared_ptr<ssl::context> tls)
    : state_(std::make_shared<server_state>(std::move(executors), std::move(opts),
                                            std::move(routes), std::move(observer), std::move(log),
                                            std::move(tls))) {
    IMAGEGATE_CHECK(state_->routes != nullptr, "a listener needs its routes");
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
    asio::co_spawn(state_->acceptor.get_executor(), detail::accept_loop(state_),
                   detail::listener_task_done{state_, "accept loop"});
    asio::co_spawn(state_->acceptor.get_executor(), detail::idle_reaper(state_),
                   detail::listener_task_done{state_, "idle reaper"});
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
