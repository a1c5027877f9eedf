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

/// What the fleet tier adds to the admin routes (gateway/fleet); empty without `[redis]`.
struct fleet_hooks {
    /// After a local purge: deletes the shared copy and tells every instance (account, and
    /// the canonical id or empty for the whole account). False: it could not (503).
    std::function<asio::awaitable<bool>(std::string account, std::string canonical_id)> broadcast;
    /// True while the fleet tier is degraded (Redis unreachable or its breaker open): /readyz
    /// stays 200 and says so.
    std::function<bool()> degraded;
};

/// A purge answer() carried out locally: what handle() broadcasts.
struct purge_target {
    std::string account;
    std::string canonical_id;  ///< empty: the whole account
    bool done = false;
};

/// Stateless apart from references to services owned by the composition root, which
/// outlive it. Thread-safe.
class admin_handler {
public:
    /// `admin_token`: the bearer token purge requires; empty disables purge (403).
    admin_handler(metrics::registry& metrics, const std::atomic<bool>& ready, purge_hooks purge,
                  std::string admin_token, fleet_hooks fleet = {})
        : metrics_(metrics),
          ready_(ready),
          purge_(std::move(purge)),
          admin_token_(std::move(admin_token)),
          fleet_(std::move(fleet)) {}

    asio::awaitable<reply> handle(request req);
    /// The synchronous core of handle(), for tests; a purge it carried out is described in
    /// `*purged` when given.
    reply answer(const request& req, purge_target* purged = nullptr);

private:
    metrics::registry& metrics_;
    const std::atomic<bool>& ready_;
    purge_hooks purge_;
    std::string admin_token_;
    fleet_hooks fleet_;
};

}  // namespace imagegate::gateway
