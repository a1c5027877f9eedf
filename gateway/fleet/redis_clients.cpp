#include "gateway/fleet/redis_clients.hpp"

#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/redis/error.hpp"

#include <stdexcept>

namespace imagegate::fleet {

boost::system::result<redis::connection_options, redis::option_error> connection_options_from(
    const config::settings& s) {
    const auto& r = s.redis;
    const auto url = redis::parse_url(r.url);
    if (!url) {
        return url.error();
    }
    redis::connection_options o;
    redis::apply_url(*url, o);
    if (!r.username.empty()) {
        o.user = r.username;
    }
    if (!r.password_file.empty()) {
        auto pw = redis::load_password_file(r.password_file);
        if (!pw) {
            return pw.error();
        }
        o.password = std::move(*pw);
    }
    if (!o.tls && (!r.ca_file.empty() || !r.tls_server_name.empty())) {
        return redis::option_error{
            "redis.ca_file and redis.tls_server_name need a rediss:// url (TLS)"};
    }
    o.ca_file = r.ca_file;
    o.server_name = r.tls_server_name;
    o.connect_timeout = r.connect_timeout;
    o.op_timeout = r.op_timeout;
    if (auto ok = redis::check(o); !ok) {
        return ok.error();
    }
    return o;
}

std::string events_channel(const config::settings& s) { return s.redis.key_prefix + ":events"; }

redis_clients::redis_clients(std::vector<asio::any_io_executor> workers,
                             asio::any_io_executor subscriber_ex, const config::settings& s,
                             redis::subscriber_handlers handlers,
                             std::shared_ptr<spdlog::logger> log)
    : stats_(std::make_shared<redis::client_stats>()),
      prefix_(s.redis.key_prefix),
      op_timeout_(s.redis.op_timeout) {
    const redis::connection_options opts = connection_options_from(s).value();
    // A confirmed subscription proves Redis answers again: it closes the breaker even when no
    // request has probed it yet (an idle instance would otherwise stay degraded).
    handlers.on_subscribed = [this, next = std::move(handlers.on_subscribed)] {
        breaker_.on_success();
        if (next) {
            next();
        }
    };
    clients_.reserve(workers.size());
    for (auto& ex : workers) {
        clients_.push_back(std::make_unique<redis::client>(std::move(ex), opts, log, stats_));
    }
    subscriber_ = std::make_unique<redis::subscriber>(std::move(subscriber_ex), opts,
                                                      std::vector{events_channel(s)},
                                                      std::move(handlers), std::move(log));
}

redis_clients::~redis_clients() { stop(); }

void redis_clients::start() {
    for (auto& c : clients_) {
        c->start();
    }
    subscriber_->start();
}

void redis_clients::stop() {
    for (auto& c : clients_) {
        c->stop();
    }
    subscriber_->stop();
}

redis::client& redis_clients::for_current_worker() {
    const std::size_t i = workers::current_index();
    IMAGEGATE_CHECK(i < clients_.size() && runs_on_this_worker(clients_[i]->get_executor()),
                    "fleet::redis_clients::for_current_worker() runs on one of its workers");
    return *clients_[i];
}

redis::client& redis_clients::for_worker(std::size_t i) {
    IMAGEGATE_CHECK(i < clients_.size(), "fleet::redis_clients::for_worker(i): i < size()");
    return *clients_[i];
}

void redis_clients::record(const boost::system::error_code& ec) {
    if (!ec) {
        breaker_.on_success();
    } else if (ec != redis::error::cancelled) {
        breaker_.on_failure();
    }
}

bool redis_clients::healthy() const {
    // Half-open counts as healthy when the connections are up: the next operation probes.
    if (breaker_.state() == redis::breaker_state::open || !subscriber_->is_subscribed()) {
        return false;
    }
    for (const auto& c : clients_) {
        if (c->is_up()) {
            return true;
        }
    }
    return false;
}

}  // namespace imagegate::fleet
