#include "gateway/runtime/reload.hpp"

#include "config/keys.hpp"
#include "config/load.hpp"
#include "gateway/admission/gate.hpp"
#include "gateway/auth/authorizer.hpp"
#include "gateway/http/server.hpp"
#include "gateway/image/handler.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/runtime/access_log.hpp"
#include "gateway/runtime/logging.hpp"

#include <boost/asio/ssl/context.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <exception>
#include <stdexcept>

namespace imagegate::gateway {
namespace {

// What the running components can take without a restart (reloader::reload_locked applies
// each): the authorizer's key table and forward grants, the admin token, the logger and the
// access log, the data listener's TLS context, the image handler's freshness windows, the
// gate's budget sizes. Everything else is built once at start-up: listeners, I/O threads, the
// cache's memory layout, the upstream pool and its token, timeouts.
constexpr std::array<std::string_view, 18> live_keys{
    "log.level",
    "log.format",
    "log.access_log",
    "log.access_log_hit_sample",
    "auth.keys_file",
    "auth.client_keys",
    "forward.anonymous_methods",
    "admin.token_file",
    "admin.token",
    // For answers stored from now on (image_handler::set_freshness).
    "cache.ttl",
    "cache.draft_ttl",
    "cache.negative_ttl",
    "cache.stale_while_revalidate",
    "cache.stale_if_error",
    // The gate resizes its budgets keeping their state (admission::gate::resize).
    "shield.budget",
    "shield.window",
    "shield.burst",
    "shield.unproven_budget",
};

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

bool is_live_key(std::string_view key, bool data_tls) {
    if (key == "server.tls_cert" || key == "server.tls_key") {
        return data_tls;
    }
    return std::find(live_keys.begin(), live_keys.end(), key) != live_keys.end();
}

reload_plan plan_reload(const config::settings& current, const config::settings& loaded,
                        bool data_tls) {
    reload_plan plan{loaded, {}, {}};
    // TLS stays on only while both files are named; turning it off is a restart.
    const bool tls_stays = data_tls && !loaded.server.tls_cert.empty();
    for (auto& key : config::changed_keys(current, loaded)) {
        if (is_live_key(key, tls_stays)) {
            plan.applied.push_back(std::move(key));
            continue;
        }
        if (const auto* spec = config::find_key(key)) {
            // The value in effect goes back; it passed every check when it was loaded.
            (void)config::assign(*spec, config::read(*spec, current), plan.next);
        } else if (key == "upstream.token") {
            plan.next.secret.upstream_token = current.secret.upstream_token;
        }
        plan.restart_required.push_back(std::move(key));
    }
    return plan;
}

reloader::reloader(config::settings in_effect, std::shared_ptr<spdlog::logger> log)
    : log_(std::move(log)),
      current_(std::move(in_effect)),
      last_success_ms_(now_ms()),
      budget_(current_.shield.budget),
      burst_(current_.shield.burst),
      window_ms_(current_.shield.window.count()) {}

// Re-reads every source (file, environment, token, key and certificate files), checks the
// result as start-up does, then applies what can change live. Nothing is applied unless
// everything checked out, so a failed reload leaves the gateway exactly as it was.
reload_outcome reloader::reload(const reload_targets& targets) {
    const std::lock_guard lock(mu_);
    reload_outcome out;
    try {
        out = reload_locked(targets);
    } catch (const std::exception& e) {
        out = reload_outcome{};
        out.errors.emplace_back("reload", std::string("unexpected failure: ") + e.what());
    }
    if (!out.ok) {
        failed_.fetch_add(1);
        std::string why;
        for (const auto& [key, reason] : out.errors) {
            why += why.empty() ? "" : "; ";
            why += key + ": " + reason;
        }
        log_->error("configuration reload failed, nothing changed: {}", why);
        return out;
    }
    ok_.fetch_add(1);
    last_success_ms_.store(now_ms());
    const auto join = [](const std::vector<std::string>& keys) {
        std::string s;
        for (const auto& k : keys) {
            s += s.empty() ? "" : ", ";
            s += k;
        }
        return s.empty() ? std::string("none") : s;
    };
    log_->info("configuration reloaded: applied: {}; restart required (old value kept): {}",
               join(out.applied), join(out.restart_required));
    return out;
}

reload_outcome reloader::reload_locked(const reload_targets& t) {
    reload_outcome out;
    if (!source_) {
        out.errors.emplace_back("reload", "this gateway has no configuration source");
        return out;
    }
    config::load_result loaded = source_();
    for (auto& e : loaded.errors) {
        out.errors.emplace_back(std::move(e.key), std::move(e.reason));
    }
    if (!out.errors.empty()) {
        return out;
    }
    const bool data_tls = t.data_server.is_tls();
    reload_plan plan = plan_reload(current_, loaded.value, data_tls);
    // Keeping old values may break a rule spanning keys; such a mix is refused whole.
    for (auto& e : config::check(plan.next)) {
        out.errors.emplace_back(std::move(e.key), std::move(e.reason) +
                                                      " (with the keys that need a restart "
                                                      "kept at their running values)");
    }
    // The certificate and key are read again even when their paths did not change: renewal
    // tools (certbot, cert-manager) replace the files in place.
    std::shared_ptr<asio::ssl::context> tls;
    if (out.errors.empty() && data_tls) {
        auto made = make_listener_tls_context(plan.next.server.tls_cert, plan.next.server.tls_key);
        if (made) {
            tls = std::move(*made);
        } else {
            out.errors.emplace_back(made.error().key, made.error().reason);
        }
    }
    if (!out.errors.empty()) {
        return out;
    }
    // The budgets first: a resize checks its sizes before it changes anything, so should it
    // refuse values config::check let through, nothing has been applied yet.
    const auto& sh = plan.next.shield;
    if (sh.budget != current_.shield.budget || sh.window != current_.shield.window ||
        sh.burst != current_.shield.burst ||
        sh.unproven_budget != current_.shield.unproven_budget) {
        try {
            t.gate.resize({.budget = sh.budget,
                           .window = sh.window,
                           .burst = sh.burst,
                           .unproven_budget = sh.unproven_budget});
        } catch (const std::invalid_argument& e) {
            out.errors.emplace_back("shield", e.what());
            return out;
        }
        budget_.store(sh.budget);
        burst_.store(sh.burst);
        window_ms_.store(sh.window.count());
    }
    // Apply. Nothing below can fail for values that passed the checks above (the log level
    // was validated by config::check).
    apply_log_settings(t.log, plan.next.log);
    t.access.configure(plan.next.log);
    t.auth.replace_keys(plan.next.auth.client_keys, plan.next.forward.anonymous_methods);
    t.admin.set_admin_token(plan.next.secret.admin_token);
    image_policy windows;
    windows.ttl = plan.next.cache.ttl;
    windows.draft_ttl = plan.next.cache.draft_ttl;
    windows.negative_ttl = plan.next.cache.negative_ttl;
    windows.stale_while_revalidate = plan.next.cache.stale_while_revalidate;
    windows.stale_if_error = plan.next.cache.stale_if_error;
    t.images.set_freshness(windows);
    if (tls) {
        t.data_server.set_tls_context(std::move(tls));
    }
    current_ = std::move(plan.next);
    out.ok = true;
    out.applied = std::move(plan.applied);
    out.restart_required = std::move(plan.restart_required);
    return out;
}

void reloader::render_metrics(std::string& out) const {
    metrics::append_header(out, "imagegate_config_reloads_total", "counter",
                           "Configuration reloads (SIGHUP, POST /config/reload) by result.");
    metrics::append_sample(out, "imagegate_config_reloads_total", "", "", ok_.load(),
                           "result=\"ok\"");
    metrics::append_sample(out, "imagegate_config_reloads_total", "", "", failed_.load(),
                           "result=\"error\"");
    const auto ms = last_success_ms_.load();
    out +=
        "# HELP imagegate_config_last_reload_success_timestamp_seconds Unix time of the last "
        "successful configuration load (start-up or reload).\n"
        "# TYPE imagegate_config_last_reload_success_timestamp_seconds gauge\n"
        "imagegate_config_last_reload_success_timestamp_seconds ";
    out += std::to_string(ms / 1000) + "." + std::to_string(1000 + ms % 1000).substr(1) + "\n";
    metrics::append_sample(out, "imagegate_shield_budget", "gauge",
                           "Upstream calls allowed per shield window (shield.budget).",
                           budget_.load());
    metrics::append_sample(out, "imagegate_shield_burst", "gauge",
                           "Upstream calls that may go out back to back (shield.burst).",
                           burst_.load());
    out += fmt::format(
        "# HELP imagegate_shield_window_seconds The window shield.budget is spread over.\n"
        "# TYPE imagegate_shield_window_seconds gauge\nimagegate_shield_window_seconds {}\n",
        static_cast<double>(window_ms_.load()) / 1000.0);
}

}  // namespace imagegate::gateway
