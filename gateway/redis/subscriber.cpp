#include "gateway/redis/subscriber.hpp"

#include "gateway/redis/detail.hpp"
#include "gateway/redis/supervisor.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <spdlog/logger.h>

#include <algorithm>
#include <stdexcept>

namespace imagegate::redis {
namespace {

using namespace asio::experimental::awaitable_operators;

bool is_string(const reply& r) { return r.kind == reply_kind::string; }

}  // namespace

/// The subscribed connection's session: SUBSCRIBE, wait for every confirmation, then PING
/// every health_check_interval and expect the pong within op_timeout. RESP2 subscriber mode
/// answers PING with a push (`["pong", ""]`), so that is the liveness signal.
class subscriber::impl final : public detail::supervisor {
public:
    impl(asio::any_io_executor ex, std::shared_ptr<const connection_context> ctx,
         std::vector<std::string> channels, subscriber_handlers handlers)
        : supervisor(std::move(ex), std::move(ctx), "subscriber", false),
          channels_(std::move(channels)),
          handlers_(std::move(handlers)),
          event_(get_executor()) {}

    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> subscriptions{0};

protected:
    asio::awaitable<void> run_session(std::shared_ptr<connection> conn) override {
        const auto& o = context().opts;
        confirmed_.assign(channels_.size(), false);
        unconfirmed_ = channels_.size();
        std::weak_ptr<impl> weak = std::static_pointer_cast<impl>(shared_from_this());
        conn->enter_push_mode([weak](reply r) {
            if (auto self = weak.lock()) {
                self->on_push(std::move(r));
            }
        });
        command subscribe("SUBSCRIBE");
        for (const auto& ch : channels_) {
            subscribe.arg(ch);
        }
        if (!conn->send(subscribe)) {
            co_return;
        }
        const bool confirmed = co_await wait_event(conn, [this] { return unconfirmed_ == 0; });
        if (!confirmed) {
            if (conn->is_open()) {
                context().log->warn("redis SUBSCRIBE not confirmed within op_timeout ({} ms)",
                                    o.op_timeout.count());
                conn->close(error::pipeline_stalled);
            }
            co_return;
        }
        subscriptions.fetch_add(1, std::memory_order_relaxed);
        set_up(true);
        if (handlers_.on_subscribed) {
            try {
                handlers_.on_subscribed();
            } catch (const std::exception& e) {
                context().log->error("redis on_subscribed handler threw: {}", e.what());
            }
        }
        for (;;) {
            const bool open =
                co_await sleep_while_open(conn, clock::now() + o.health_check_interval);
            if (!open) {
                co_return;
            }
            pong_seen_ = false;
            if (!conn->send(command("PING"))) {
                co_return;
            }
            const bool pong = co_await wait_event(conn, [this] { return pong_seen_; });
            if (!pong) {
                if (conn->is_open()) {
                    context().log->warn(
                        "redis subscriber: no pong within op_timeout ({} ms); "
                        "reconnecting",
                        o.op_timeout.count());
                    conn->close(error::pipeline_stalled);
                }
                co_return;
            }
        }
    }

    void on_stop() override { event_.cancel(); }

private:
    /// Waits up to op_timeout for `done()` (re-checked each time on_push wakes us); false
    /// on timeout or when the connection closed.
    template <class Done>
    asio::awaitable<bool> wait_event(std::shared_ptr<connection> conn, Done done) {
        const auto deadline = clock::now() + context().opts.op_timeout;
        while (!done() && conn->is_open() && clock::now() < deadline) {
            event_.expires_at(deadline);
            co_await (conn->wait_closed() || event_.async_wait(use_nothrow));
        }
        co_return done() && conn->is_open();
    }

    void on_push(reply r) {
        const auto& log = context().log;
        const bool well_formed =
            r.kind == reply_kind::array && !r.elements.empty() && is_string(r.elements[0]);
        if (!well_formed) {
            log->warn(
                "redis subscriber got {}; reconnecting",
                r.is_error() ? "error " + printable(r.text) : std::string("a non-push reply"));
            close_current();
            return;
        }
        const std::string_view kind = r.elements[0].text;
        const auto n = r.elements.size();
        if (kind == "message" && n == 3 && is_string(r.elements[1]) && is_string(r.elements[2])) {
            messages.fetch_add(1, std::memory_order_relaxed);
            if (handlers_.on_message) {
                handlers_.on_message(r.elements[1].text, r.elements[2].text);
            }
            return;
        }
        if (kind == "subscribe" && n == 3 && is_string(r.elements[1])) {
            const auto it = std::find(channels_.begin(), channels_.end(), r.elements[1].text);
            if (it != channels_.end()) {
                const auto i = static_cast<std::size_t>(it - channels_.begin());
                if (!confirmed_[i]) {
                    confirmed_[i] = true;
                    --unconfirmed_;
                }
            }
            if (unconfirmed_ == 0) {
                event_.cancel();
            }
            return;
        }
        if (kind == "pong") {
            pong_seen_ = true;
            event_.cancel();
            return;
        }
        log->warn("redis subscriber got an unexpected push '{}'; reconnecting", printable(kind));
        close_current();
    }

    void close_current() {
        if (const auto& conn = current()) {
            conn->close(error::protocol_error);
        }
    }

    std::vector<std::string> channels_;
    subscriber_handlers handlers_;
    asio::steady_timer event_;  // woken by on_push: confirmations, pong
    std::vector<bool> confirmed_;
    std::size_t unconfirmed_ = 0;
    bool pong_seen_ = false;
};

namespace {

std::shared_ptr<const connection_context> subscriber_context(
    connection_options opts, const std::vector<std::string>& channels,
    std::shared_ptr<spdlog::logger> log) {
    if (channels.empty()) {
        throw std::invalid_argument("redis subscriber: no channel to subscribe to");
    }
    return make_context(std::move(opts), std::move(log)).value();
}

}  // namespace

subscriber::subscriber(asio::any_io_executor ex, connection_options opts,
                       std::vector<std::string> channels, subscriber_handlers handlers,
                       std::shared_ptr<spdlog::logger> log) {
    auto ctx = subscriber_context(std::move(opts), channels, std::move(log));
    impl_ = std::make_shared<impl>(std::move(ex), std::move(ctx), std::move(channels),
                                   std::move(handlers));
}

subscriber::~subscriber() { impl_->stop(); }

void subscriber::start() { impl_->start(); }

void subscriber::stop() { impl_->stop(); }

bool subscriber::is_subscribed() const noexcept { return impl_->is_up(); }

std::uint64_t subscriber::messages() const noexcept {
    return impl_->messages.load(std::memory_order_relaxed);
}

std::uint64_t subscriber::subscriptions() const noexcept {
    return impl_->subscriptions.load(std::memory_order_relaxed);
}

std::uint64_t subscriber::reconnects() const noexcept { return impl_->reconnects(); }

asio::awaitable<bool> subscriber::wait_subscribed(clock::time_point deadline) {
    const std::shared_ptr<impl> self = impl_;
    const bool up = co_await self->wait_up(deadline);
    co_return up;
}

asio::any_io_executor subscriber::get_executor() const noexcept { return impl_->get_executor(); }

}  // namespace imagegate::redis
