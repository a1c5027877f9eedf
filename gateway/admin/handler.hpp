// The admin listener's routes: /healthz, /readyz, /metrics, cache purge and configuration
// reload.
#pragma once

#include "gateway/core/snapshot.hpp"
#include "gateway/http/server.hpp"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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

/// A purge carried out locally: what the fleet broadcast sends.
struct purge_target {
    std::string account;
    std::string canonical_id;  ///< empty: the whole account
    bool done = false;
};

/// What a configuration reload did, for the admin answer and the log.
struct reload_outcome {
    /// false: nothing changed; `errors` says why.
    bool ok = false;
    /// (key, reason) of every problem found; empty when ok.
    std::vector<std::pair<std::string, std::string>> errors;
    /// Keys whose new values are in effect.
    std::vector<std::string> applied;
    /// Keys whose new values need a restart; the old values stay in effect.
    std::vector<std::string> restart_required;
};

/// Runs a reload (the composition root's); called on the admin session's worker.
using reload_fn = std::function<reload_outcome()>;

/// References services owned by the composition root, which outlive it. Thread-safe: the
/// admin token is an immutable snapshot replaced whole (set_admin_token, a reload).
class admin_handler {
public:
    /// `admin_token`: the bearer token purge and reload require; empty disables them (403).
    admin_handler(metrics::registry& metrics, const std::atomic<bool>& ready, purge_hooks purge,
                  std::string admin_token, fleet_hooks fleet = {}, reload_fn reload = {});
    admin_handler(const admin_handler&) = delete;
    admin_handler& operator=(const admin_handler&) = delete;

    /// The admin listener's routing table (its handlers refer to this object). The
    /// composition root adds the routes of other components (/cache/warm) before the
    /// listener starts; read-only afterwards.
    std::shared_ptr<router> routes() const noexcept { return routes_; }
    asio::awaitable<reply> handle(request req);
    /// The synchronous core of handle(), for tests: routes `req` and answers it (a purge is
    /// carried out locally; its fleet broadcast is handle()'s).
    reply answer(const request& req);

    /// Publishes a new admin token (a reload); any thread.
    void set_admin_token(std::string token) {
        admin_token_.store(std::make_shared<const std::string>(std::move(token)));
    }

    /// Null when `req` carries the admin token, else the 401/403 to answer with `route`.
    /// Every admin route's check (/cache/warm's too), so a reloaded token applies to all.
    std::optional<reply> refuse_unless_admin(const request& req, std::string_view route) const;

private:
    reply purge(const request& req, purge_target* purged);
    /// After a local purge: the fleet broadcast, and 503 when it could not be sent.
    asio::awaitable<reply> broadcast_purge(reply local, purge_target target);
    reply reload(const request& req);

    metrics::registry& metrics_;
    const std::atomic<bool>& ready_;
    purge_hooks purge_;
    reload_fn reload_;
    snapshot<std::string> admin_token_;
    fleet_hooks fleet_;
    std::shared_ptr<router> routes_;
};

/// The JSON answer of POST /config/reload (Cloudflare-style envelope): 200 with
/// result.applied / result.restart_required when ok, else 400 with every error.
std::string reload_json(const reload_outcome& r);

}  // namespace imagegate::gateway
