#include "gateway/redis/client.hpp"

#include "gateway/redis/detail.hpp"
#include "gateway/redis/supervisor.hpp"

#include <spdlog/logger.h>

#include <stdexcept>

namespace imagegate::redis {
namespace {

command script_command(std::string_view name, const std::string& sha_or_body,
                       const std::vector<std::string>& keys, const std::vector<std::string>& args) {
    command c(name);
    c.arg(sha_or_body).arg(keys.size());
    for (const auto& k : keys) {
        c.arg(k);
    }
    for (const auto& a : args) {
        c.arg(a);
    }
    return c;
}

std::shared_ptr<const connection_context> context_or_throw(connection_options opts,
                                                           std::shared_ptr<spdlog::logger> log) {
    return make_context(std::move(opts), std::move(log)).value();
}

}  // namespace

void client_stats::render(std::string& out) const {
    using metrics::append_sample;
    const auto get = [](const counter& c) { return c.load(std::memory_order_relaxed); };
    append_sample(out, "imagegate_redis_ops_total", "counter",
                  "Redis commands issued (an EVAL after NOSCRIPT counts again).", get(ops));
    append_sample(out, "imagegate_redis_errors_total", "counter",
                  "Redis commands that got no reply (timeouts, refusals while down, lost "
                  "connections).",
                  get(errors));
    append_sample(out, "imagegate_redis_timeouts_total", "counter",
                  "Redis commands that passed their deadline.", get(timeouts));
    append_sample(out, "imagegate_redis_down_refusals_total", "counter",
                  "Redis commands refused at once because the client was down.",
                  get(down_refusals));
    append_sample(out, "imagegate_redis_error_replies_total", "counter",
                  "Redis error replies received.", get(error_replies));
    append_sample(out, "imagegate_redis_noscript_reloads_total", "counter",
                  "EVALSHA answered NOSCRIPT and retried as EVAL.", get(noscript_reloads));
    append_sample(out, "imagegate_redis_reconnects_total", "counter",
                  "Redis connections opened after one was lost or failed.", get(reconnects));
    append_sample(out, "imagegate_redis_connect_failures_total", "counter",
                  "Attempts to connect to Redis (and authenticate) that failed.",
                  get(connect_failures));
    append_sample(out, "imagegate_redis_connections_up", "gauge",
                  "Redis command connections up (one per I/O thread when healthy).",
                  get(connections_up));
    latency.render(out, "imagegate_redis_op_seconds", "Redis command latency (replies only).");
}

/// The reconnecting command connection: supervisor + exec accounting + health PINGs.
class client::impl final : public detail::supervisor {
public:
    impl(asio::any_io_executor ex, std::shared_ptr<const connection_context> ctx,
         std::shared_ptr<client_stats> stats)
        : supervisor(std::move(ex), std::move(ctx), "client", true), stats_(std::move(stats)) {}

    asio::awaitable<boost::system::result<reply>> exec(command cmd, clock::time_point deadline) {
        detail::require_executor(get_executor(), "redis::client::exec");
        stats_->ops.fetch_add(1, std::memory_order_relaxed);
        const std::shared_ptr<connection> conn = current();
        if (stopping() || !conn || !conn->is_open()) {
            const auto e = stopping() ? error::shutting_down : error::not_connected;
            stats_->errors.fetch_add(1, std::memory_order_relaxed);
            if (e == error::not_connected) {
                stats_->down_refusals.fetch_add(1, std::memory_order_relaxed);
            }
            co_return make_error_code(e);
        }
        const auto started = clock::now();
        auto r = co_await conn->exec(std::move(cmd), deadline);
        if (r) {
            stats_->latency.observe(clock::now() - started);
            if (r->is_error()) {
                stats_->error_replies.fetch_add(1, std::memory_order_relaxed);
            }
        } else {
            stats_->errors.fetch_add(1, std::memory_order_relaxed);
            if (r.error() == error::timeout || r.error() == error::pipeline_stalled) {
                stats_->timeouts.fetch_add(1, std::memory_order_relaxed);
            }
        }
        co_return r;
    }

    asio::awaitable<boost::system::result<reply>> eval_script(script s,
                                                              std::vector<std::string> keys,
                                                              std::vector<std::string> args,
                                                              clock::time_point deadline) {
        auto first = co_await exec(script_command("EVALSHA", s.sha1(), keys, args), deadline);
        if (!first || first->error_code() != "NOSCRIPT") {
            co_return first;
        }
        // The server lost its script cache (restart, failover, SCRIPT FLUSH): EVAL loads
        // the body again, so the next call's EVALSHA finds it.
        stats_->noscript_reloads.fetch_add(1, std::memory_order_relaxed);
        auto second = co_await exec(script_command("EVAL", s.body(), keys, args), deadline);
        co_return second;
    }

protected:
    asio::awaitable<void> run_session(std::shared_ptr<connection> conn) override {
        const auto& o = context().opts;
        for (;;) {
            const bool open =
                co_await sleep_while_open(conn, clock::now() + o.health_check_interval);
            if (!open) {
                co_return;
            }
            // A dead peer that sent no RST is otherwise noticed only by the next caller's
            // timeout; a failed PING closes the connection through the watchdog.
            auto pong = co_await conn->exec(command("PING"));
            if (pong && !pong->is_status("PONG")) {
                context().log->warn("redis answered the health PING with {}",
                                    printable(pong->text));
                conn->close(error::protocol_error);
                co_return;
            }
        }
    }

    void on_reconnect() override { stats_->reconnects.fetch_add(1, std::memory_order_relaxed); }
    void on_connect_failure() override {
        stats_->connect_failures.fetch_add(1, std::memory_order_relaxed);
    }
    void on_up_changed(bool up) override {
        if (up) {
            stats_->connections_up.fetch_add(1, std::memory_order_relaxed);
        } else {
            stats_->connections_up.fetch_sub(1, std::memory_order_relaxed);
        }
    }

private:
    std::shared_ptr<client_stats> stats_;
};

client::client(asio::any_io_executor ex, connection_options opts,
               std::shared_ptr<spdlog::logger> log, std::shared_ptr<client_stats> stats)
    : stats_(stats ? std::move(stats) : std::make_shared<client_stats>()),
      impl_(std::make_shared<impl>(std::move(ex), context_or_throw(std::move(opts), std::move(log)),
                                   stats_)) {}

client::~client() { impl_->stop(); }

void client::start() { impl_->start(); }

void client::stop() { impl_->stop(); }

asio::awaitable<boost::system::result<reply>> client::exec(command cmd,
                                                           clock::time_point deadline) {
    const std::shared_ptr<impl> self = impl_;
    auto r = co_await self->exec(std::move(cmd), deadline);
    co_return r;
}

asio::awaitable<boost::system::result<reply>> client::eval_script(script s,
                                                                  std::vector<std::string> keys,
                                                                  std::vector<std::string> args,
                                                                  clock::time_point deadline) {
    const std::shared_ptr<impl> self = impl_;
    auto r = co_await self->eval_script(std::move(s), std::move(keys), std::move(args), deadline);
    co_return r;
}

asio::awaitable<bool> client::wait_up(clock::time_point deadline) {
    const std::shared_ptr<impl> self = impl_;
    const bool up = co_await self->wait_up(deadline);
    co_return up;
}

bool client::is_up() const noexcept { return impl_->is_up(); }

std::uint64_t client::reconnects() const noexcept { return impl_->reconnects(); }

asio::any_io_executor client::get_executor() const noexcept { return impl_->get_executor(); }

}  // namespace imagegate::redis
