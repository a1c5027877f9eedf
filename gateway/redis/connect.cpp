// Establishing a redis::connection: resolve, TCP connect and verified TLS handshake under
// one connect deadline, then AUTH / SELECT / PING, each under the op deadline.
#include "gateway/redis/connection.hpp"

#include "gateway/redis/detail.hpp"
#include "gateway/upstream/tls.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <spdlog/logger.h>

#include <openssl/ssl.h>

#include <vector>

namespace imagegate::redis {
namespace {

using tcp = asio::ip::tcp;

/// Runs `on_expiry` (on `ex`) if `deadline` passes while the guard lives: closing the
/// socket aborts whichever step (resolve, connect, handshake) is in flight. The timer
/// handler owns the shared state, so it may run after the guard is gone; it then does
/// nothing. All on one serial executor, so `armed` needs no synchronisation.
class deadline_guard {
public:
    deadline_guard(const asio::any_io_executor& ex, clock::time_point deadline,
                   std::function<void()> on_expiry)
        : state_(std::make_shared<state>(ex, std::move(on_expiry))) {
        state_->timer.expires_at(deadline);
        state_->timer.async_wait([s = state_](const boost::system::error_code& ec) {
            if (!ec && s->armed) {
                s->expired = true;
                s->on_expiry();
            }
        });
    }
    ~deadline_guard() {
        state_->armed = false;
        state_->timer.cancel();
    }
    deadline_guard(const deadline_guard&) = delete;
    deadline_guard& operator=(const deadline_guard&) = delete;

    bool expired() const noexcept { return state_->expired; }

private:
    struct state {
        state(const asio::any_io_executor& ex, std::function<void()> f)
            : timer(ex), on_expiry(std::move(f)) {}
        asio::steady_timer timer;
        std::function<void()> on_expiry;
        bool armed = true;
        bool expired = false;
    };
    std::shared_ptr<state> state_;
};

bool is_ip_literal(const std::string& host) {
    boost::system::error_code ec;
    asio::ip::make_address(host, ec);
    return !ec;
}

}  // namespace

boost::system::result<std::shared_ptr<const connection_context>, option_error> make_context(
    connection_options opts, std::shared_ptr<spdlog::logger> log) {
    auto checked = check(opts);
    if (!checked) {
        return checked.error();
    }
    auto ctx = std::make_shared<connection_context>();
    if (opts.tls) {
        auto tls = upstream::make_tls_context({.ca_file = opts.ca_file, .ca_pem = {}});
        if (!tls) {
            return option_error{"redis TLS: " + tls.error().reason};
        }
        ctx->tls = std::move(*tls);
    }
    ctx->opts = std::move(opts);
    ctx->log = log ? std::move(log) : std::make_shared<spdlog::logger>("redis");
    return std::shared_ptr<const connection_context>(std::move(ctx));
}

asio::awaitable<boost::system::result<std::shared_ptr<connection>>> connection::open(
    executor_type ex, std::shared_ptr<const connection_context> ctx) {
    auto self = std::make_shared<connection>(private_tag{}, std::move(ex), std::move(ctx));
    detail::require_executor(self->ex_, "redis::connection::open");
    auto transport = co_await self->connect_transport();
    if (!transport) {
        self->close(static_cast<error>(transport.error().value()));
        co_return transport.error();
    }
    self->start_loops();
    auto ready = co_await self->handshake();
    if (!ready) {
        self->close(static_cast<error>(ready.error().value()));
        co_return ready.error();
    }
    co_return self;
}

asio::awaitable<boost::system::result<void>> connection::connect_transport() {
    const auto& o = ctx_->opts;
    const deadline_guard guard(ex_, clock::now() + o.connect_timeout, [this] {
        boost::system::error_code ignored;
        resolver_.cancel();
        lowest().close(ignored);
    });
    const auto failed = [&guard](error e) {
        return make_error_code(guard.expired() ? error::connect_timeout : e);
    };

    std::vector<tcp::endpoint> endpoints;
    boost::system::error_code aec;
    const auto address = asio::ip::make_address(o.host, aec);
    if (!aec) {
        endpoints.emplace_back(address, o.port);
    } else {
        auto [rec, results] =
            co_await resolver_.async_resolve(o.host, std::to_string(o.port), use_nothrow);
        if (rec || results.empty()) {
            co_return failed(error::resolve_failed);
        }
        for (const auto& entry : results) {
            endpoints.push_back(entry.endpoint());
        }
    }
    auto [cec, endpoint] = co_await asio::async_connect(lowest(), endpoints, use_nothrow);
    (void)endpoint;
    if (cec) {
        co_return failed(error::connect_failed);
    }
    boost::system::error_code ignored;
    lowest().set_option(tcp::no_delay(true), ignored);
    // Keepalive: a peer that vanished without a RST is also noticed by the health PING;
    // this covers a subscriber between PINGs at the kernel's pace.
    lowest().set_option(asio::socket_base::keep_alive(true), ignored);

    if (tls_) {
        const std::string& name = o.server_name.empty() ? o.host : o.server_name;
        // SNI for name-based routing (managed Redis front ends); RFC 6066 §3 forbids
        // address literals in it.
        if (!is_ip_literal(name) &&
            SSL_set_tlsext_host_name(tls_->native_handle(), name.c_str()) != 1) {
            co_return failed(error::tls_failed);
        }
        // The context verifies the chain; this checks it is for *this* host (RFC 6125).
        boost::system::error_code vec;
        tls_->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, vec);
        if (!vec) {
            tls_->set_verify_callback(asio::ssl::host_name_verification(name), vec);
        }
        if (vec) {
            co_return failed(error::tls_failed);
        }
        auto [hec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, use_nothrow);
        if (hec) {
            if (!guard.expired()) {
                ctx_->log->warn("redis TLS handshake with {}:{} failed: {}", o.host, o.port,
                                hec.message());
            }
            co_return failed(error::tls_failed);
        }
    }
    if (guard.expired()) {
        co_return make_error_code(error::connect_timeout);
    }
    co_return boost::system::result<void>{};
}

asio::awaitable<boost::system::result<void>> connection::handshake() {
    const auto& o = ctx_->opts;
    if (!o.password.empty()) {
        command auth("AUTH");
        if (!o.user.empty()) {
            auth.arg(o.user);
        }
        auth.arg(o.password);
        auto r = co_await exec(std::move(auth));
        if (!r) {
            co_return r.error();
        }
        if (!r->is_status("OK")) {
            // The server's words only (e.g. "WRONGPASS invalid username-password pair"),
            // escaped; never the password.
            ctx_->log->warn("redis {}:{} refused AUTH{}: {}", o.host, o.port,
                            o.user.empty() ? "" : " for user " + printable(o.user),
                            printable(r->text));
            co_return make_error_code(error::auth_failed);
        }
    }
    if (o.db != 0) {
        auto r = co_await exec(make_command("SELECT", o.db));
        if (!r) {
            co_return r.error();
        }
        if (!r->is_status("OK")) {
            ctx_->log->warn("redis {}:{} refused SELECT {}: {}", o.host, o.port, o.db,
                            printable(r->text));
            co_return make_error_code(error::select_failed);
        }
    }
    auto r = co_await exec(command("PING"));
    if (!r) {
        co_return r.error();
    }
    if (!r->is_status("PONG")) {
        ctx_->log->warn("redis {}:{} answered PING with {}", o.host, o.port, printable(r->text));
        // NOAUTH: the server wants a password we do not have.
        co_return make_error_code(r->error_code() == "NOAUTH" ? error::auth_failed
                                                              : error::handshake_failed);
    }
    co_return boost::system::result<void>{};
}

}  // namespace imagegate::redis
