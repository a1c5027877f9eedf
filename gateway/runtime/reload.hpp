// Configuration reload: which changes a running gateway applies live and which need a
// restart (the plan), and the reloader that loads, checks and applies them.
#pragma once

#include "config/settings.hpp"
#include "gateway/admin/handler.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::config {
struct load_result;
}

namespace imagegate::admission {
class gate;
}

namespace imagegate::gateway {

class access_log;
class authorizer;
class http_server;
class image_handler;

/// What a reload will do.
struct reload_plan {
    /// The settings to put in effect: the loaded ones, except that every key in
    /// `restart_required` keeps its value from the settings in effect.
    config::settings next;
    /// Changed keys applied live, in key-table order (plus the pseudo-keys of
    /// config::changed_keys).
    std::vector<std::string> applied;
    /// Changed keys that need a restart; their old values stay in effect.
    std::vector<std::string> restart_required;
};

/// Whether a change of `key` (a key path or a pseudo-key of config::changed_keys) is applied
/// live. `data_tls`: the data listener speaks TLS (its certificate and key then change live;
/// switching TLS on or off needs a restart).
bool is_live_key(std::string_view key, bool data_tls);

/// Splits the changes from `current` to `loaded` into live and restart-required ones. The
/// caller checks `next` again (config::check): keeping an old value may break a rule that
/// spans keys (e.g. keys removed while a restart-only auth.mode change was not applied).
reload_plan plan_reload(const config::settings& current, const config::settings& loaded,
                        bool data_tls);

/// The components a reload changes, owned by the composition root.
struct reload_targets {
    spdlog::logger& log;
    access_log& access;
    authorizer& auth;
    admin_handler& admin;
    http_server& data_server;
    image_handler& images;
    /// The image path's gate: shield.budget, .window, .burst and .unproven_budget resize it.
    admission::gate& gate;
};

/// Loads the configuration again, checks it as start-up does, and applies what can change
/// live; a reload that fails anywhere changes nothing. Keeps the settings in effect and the
/// reload metrics. Owned by the composition root.
///
/// Thread-safety: reload() from any thread, one at a time (a mutex); render_metrics() from
/// any thread. What changes live reaches the request threads as immutable snapshots: the
/// authorizer's key table, the admin token and the image handler's freshness windows are
/// shared_ptr<const T> replaced whole (core/snapshot.hpp); the log level is spdlog's atomic
/// level and the formatter is swapped under the sink's lock; the access log's switches are
/// atomics; the data listener takes its TLS context under a lock once per new connection;
/// each budget takes its new sizes under the mutex its decisions already hold (the fleet's
/// script arguments are a snapshot).
/// Nothing is copied per worker, and nothing a request holds is ever modified.
class reloader {
public:
    using source_fn = std::function<config::load_result()>;

    /// `in_effect`: the settings the gateway started with (their load counts as the last
    /// successful one).
    reloader(config::settings in_effect, std::shared_ptr<spdlog::logger> log);

    /// Where reload() reads the configuration (set once, before any reload).
    void set_source(source_fn source) { source_ = std::move(source); }
    /// Runs one reload and logs its outcome (one line: what applied, what needs a restart,
    /// or exactly why nothing changed).
    reload_outcome reload(const reload_targets& targets);
    /// imagegate_config_reloads_total{result},
    /// imagegate_config_last_reload_success_timestamp_seconds, and the running shield sizes
    /// (imagegate_shield_budget, _burst, _window_seconds) that dashboards compare calls with.
    void render_metrics(std::string& out) const;

private:
    reload_outcome reload_locked(const reload_targets& targets);

    std::shared_ptr<spdlog::logger> log_;
    source_fn source_;
    std::mutex mu_;
    config::settings current_;  // guarded by mu_
    std::atomic<std::uint64_t> ok_{0};
    std::atomic<std::uint64_t> failed_{0};
    std::atomic<std::int64_t> last_success_ms_;  // system clock, ms since the epoch
    // The shield sizes in effect, for dashboards (calls vs budget); a reload changes them.
    std::atomic<std::uint64_t> budget_;
    std::atomic<std::uint64_t> burst_;
    std::atomic<std::int64_t> window_ms_;
};

}  // namespace imagegate::gateway
