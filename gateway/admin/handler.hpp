// The admin listener's routes: /healthz, /readyz, /metrics and cache purge.
#pragma once

#include "gateway/http/server.hpp"

#include <atomic>
#include <functional>

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
                  std::string admin_token)
        : metrics_(metrics),
          ready_(ready),
          purge_(std::move(purge)),
          admin_token_(std::move(admin_token)) {}

    asio::awaitable<reply> handle(request req);
    /// The synchronous core of handle(), for tests.
    reply answer(const request& req);

private:
    metrics::registry& metrics_;
    const std::atomic<bool>& ready_;
    purge_hooks purge_;
    std::string admin_token_;
};

}  // namespace imagegate::gateway
