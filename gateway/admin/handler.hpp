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
                  std::string admin_token, reload_fn reload = {})
        : metrics_(metrics),
          ready_(ready),
          purge_(std::move(purge)),
          reload_(std::move(reload)),
          admin_token_(std::make_shared<const std::string>(std::move(admin_token))) {}

    asio::awaitable<reply> handle(request req);
    /// The synchronous core of handle(), for tests.
    reply answer(const request& req);

    /// Publishes a new admin token (a reload); any thread.
    void set_admin_token(std::string token) {
        admin_token_.store(std::make_shared<const std::string>(std::move(token)));
    }

private:
    /// Null when `req` carries the admin token, else the 401/403 to answer with `route`.
    std::optional<reply> refuse_unless_admin(const request& req, std::string_view route) const;
    reply reload(const request& req);

    metrics::registry& metrics_;
    const std::atomic<bool>& ready_;
    purge_hooks purge_;
    reload_fn reload_;
    snapshot<std::string> admin_token_;
};

/// The JSON answer of POST /config/reload (Cloudflare-style envelope): 200 with
/// result.applied / result.restart_required when ok, else 400 with every error.
std::string reload_json(const reload_outcome& r);

}  // namespace imagegate::gateway
