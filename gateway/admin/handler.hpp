// The admin listener's routes: /healthz, /readyz, /metrics and cache purge.
#pragma once

#include "gateway/http/server.hpp"

#include <atomic>
#include <functional>
#include <memory>

namespace imagegate::metrics {
class registry;
}

namespace imagegate::gateway {

/// Purge hooks, provided by the composition root (the cache lives elsewhere).
struct purge_hooks {
    /// Removes one (account, canonical id) entry; returns whether one was removed.
    std::function<bool(std::string_view account, std::string_view canonical_id)> image;
    /// Removes every entry of an account; returns how many.
    std::function<std::size_t(std::string_view account)> account;
};

/// Stateless apart from references to services owned by the composition root, which
/// outlive it. Thread-safe.
class admin_handler {
public:
    /// `admin_token`: the bearer token purge requires; empty disables purge (403).
    admin_handler(metrics::registry& metrics, const std::atomic<bool>& ready, purge_hooks purge,
                  std::string admin_token);
    admin_handler(const admin_handler&) = delete;
    admin_handler& operator=(const admin_handler&) = delete;

    /// The admin listener's routing table (its handlers refer to this object).
    std::shared_ptr<const router> routes() const noexcept { return routes_; }
    asio::awaitable<reply> handle(request req);
    /// The synchronous core of handle(), for tests: routes `req` and answers it.
    reply answer(const request& req);

private:
    reply purge(const request& req);

    metrics::registry& metrics_;
    const std::atomic<bool>& ready_;
    purge_hooks purge_;
    std::string admin_token_;
    std::shared_ptr<router> routes_;
};

}  // namespace imagegate::gateway
