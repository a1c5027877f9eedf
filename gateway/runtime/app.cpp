#include "gateway/runtime/app.hpp"

#include "cache/sharded_cache.hpp"
#include "config/load.hpp"
#include "config/parse.hpp"
#include "gateway/admin/handler.hpp"
#include "gateway/admission/local_gate.hpp"
#include "gateway/auth/authorizer.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/forward/handler.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/fleet/budget_gate.hpp"
#include "gateway/fleet/redis_clients.hpp"
#include "gateway/http/server.hpp"
#include "gateway/image/handler.hpp"
#include "gateway/image/writes.hpp"
#include "gateway/runtime/access_log.hpp"
#include "gateway/runtime/components.hpp"
#include "gateway/image/routes.hpp"
#include "gateway/runtime/fd_limit.hpp"
#include "gateway/runtime/logging.hpp"
#include "gateway/runtime/reload.hpp"
#include "gateway/runtime/signals.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/upstream/tls.hpp"
#include "gateway/warm/api.hpp"
#include "gateway/warm/warmer.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <stdexcept>
#include <mutex>
#include <thread>
#include <vector>

namespace imagegate::gateway {

struct app::impl {
    config::settings settings;
    std::shared_ptr<spdlog::logger> log;
    // The threading model (tests/bench/PERFORMANCE.md, "Threading model"): one io_context
    // per I/O thread, each run by exactly one thread, no strand anywhere. Sessions are
    // spread over the workers in turn; a session's miss runs on its worker with that
    // worker's upstream pool; the listeners' acceptors and idle reapers and the signal
    // handler run on worker 0. Declared first so it is destroyed last: everything below may
    // own I/O objects.
    workers io;
    // The clock of freshness and the shield's decisions; only tests move it.
    time_source time;
    metrics::registry registry;
    // Writes on a thread of its own; stopped (what is queued written) after the workers.
    access_log access;
    std::atomic<bool> ready{false};
    cache::sharded_cache cache;
    // The fleet tier (gateway/fleet), only with `[redis] url`. The subscriber's handlers
    // reach `l2` through this member; nothing runs before both exist.
    std::unique_ptr<fleet::redis_clients> redis;
    std::shared_ptr<fleet::l2_cache> l2;
    std::unique_ptr<upstream::client> client;
    authorizer auth;
    std::shared_ptr<admission::gate> gate;  // the image path's and the warm jobs'
    image_handler images;
    // What forwarded image writes do to the cache (the forward handler's begin/finish).
    write_effects writes;
    forward_handler forwarding;  // everything under /client/v4/ the cache does not answer
    admin_handler admin;
    warm::warmer warmer;
    warm::warm_api warm_routes;
    std::unique_ptr<http_server> data_server;
    std::unique_ptr<http_server> admin_server;
    bool started = false;

    // SIGHUP and POST /config/reload (reload.hpp). `settings` above stays what start-up
    // built; the reloader keeps the settings in effect.
    gateway::reloader reloader;

    // Shutdown is requested from any thread (request_stop) and carried out by a thread that
    // is not a worker (finish_shutdown): the drain needs every worker running.
    std::mutex stop_mu;
    std::condition_variable stop_cv;
    bool stop_requested = false;  // guarded by stop_mu
    std::once_flag finish_once;
    // run_until_signal()'s handler while it runs: its pending wait keeps worker 0 busy, so
    // the shutdown cancels it before letting the workers run out of work.
    std::atomic<signal_handler*> signals{nullptr};

    impl(config::settings s, std::shared_ptr<spdlog::logger> l)
        : settings(std::move(s)),
          log(std::move(l)),
          io(thread_count(settings)),
          access(log, settings.log, thread_count(settings)),
          cache(cache_options(settings.cache)),
          redis(make_redis(io, settings, l2, log)),
          l2(make_l2(redis.get(), cache, settings, log)),
          client(make_client(io.executors(), settings, log)),
          auth(settings.auth.client_keys, settings.forward.anonymous_methods),
          gate(make_gate(settings, time, redis.get(), log)),
          images(cache, *client, auth, image_policy_from(settings, time), log, gate),
          writes(images),
          forwarding(*client, gate, auth, forward_options_from(settings, time, &writes), log),
          admin(registry, ready,
                purge_hooks{
                    [this](std::string_view account, std::string_view id) {
                        return cache.erase(cache::key(account, id));
                    },
                    [this](std::string_view account) { return cache.erase_account(account); }},
                settings.secret.admin_token, make_fleet_hooks(redis.get(), l2),
                [this] { return reload(); }),
          // With the fleet tier a warm job's entries go to L2 too (l2 is null without it).
          warmer(cache, *client, gate, image_policy_from(settings, time), log,
                 {.l2 = l2, .state_file = settings.warm.state_file}),
          warm_routes(
              warmer, [this](const request& r) { return admin.refuse_unless_admin(r, "warm"); },
              settings.auth.mode == "passthrough"
                  ? "Warming needs auth.mode = token: in passthrough mode the gateway "
                    "holds no credential of its own"
                  : ""),
          reloader(settings, log) {
        registry.add_source([this](std::string& out) {
            images.render_metrics(out);
            writes.render_metrics(out);
            forwarding.render_metrics(out);
            warmer.render_metrics(out);
            render_cache_metrics(out, cache.snapshot(), settings.cache.max_bytes);
            client->stats().render(out);
            access.render_metrics(out);
            reloader.render_metrics(out);
        });
        if (redis) {
            images.attach_fleet(l2);
            registry.add_source([this](std::string& out) {
                l2->stats().render(out);
                redis->stats().render(out);
                metrics::append_sample(out, "imagegate_fleet_redis_breaker_state", "gauge",
                                       "The Redis circuit breaker: 0 closed, 1 open, 2 half-open.",
                                       static_cast<std::uint64_t>(redis->breaker().state()));
                metrics::append_sample(out, "imagegate_fleet_degraded", "gauge",
                                       "1 while the fleet tier is degraded (Redis unreachable).",
                                       redis->healthy() ? 0 : 1);
            });
            log->info("fleet tier: {} (key prefix {}, {} instance(s))",
                      redis::describe(fleet::connection_options_from(settings).value()),
                      settings.redis.key_prefix, settings.fleet.instances);
        }
        if (settings.auth.mode == "passthrough") {
            if (!settings.secret.upstream_token.empty()) {
                log->warn("auth.mode = passthrough: the upstream token is set but never used");
            }
        } else if (settings.secret.upstream_token.empty()) {
            log->warn(
                "no upstream token (CLOUDFLARE_API_TOKEN or upstream.token_file): "
                "requests go upstream without Authorization");
        }
        auto observe = [this](const exchange_record& rec) {
            registry.record(rec.route, rec.status, rec.duration, rec.cache_status);
            access.observe(rec);
        };
        // /cache/warm belongs to the warmer; it shares the admin listener and its token check.
        admin.routes()->add(
            {http::verb::get, http::verb::post, http::verb::delete_}, "/cache/warm", "warm",
            [this](const request& req) -> handler_result { return warm_routes.handle(req); });
        auto data_routes = std::make_shared<router>();
        add_image_routes(*data_routes, [this](const request& req) -> handler_result {
            handler_result h = images.handle(req);
            // A GET/HEAD under the image route's prefix that is not an image-detail read
            // (listings, keys, stats, variants, ids in raw segments) is forwarded; the check
            // runs only on the image handler's own 404.
            if (const auto* r = std::get_if<reply>(&h);
                r != nullptr && r->route == "not_found" && req.target.starts_with("/client/v4/")) {
                return forwarding.handle(req);
            }
            return h;
        });
        // Every other method and path under /client/v4/ goes upstream through the shield.
        data_routes->add(
            method_set::any(), "/client/v4/*", "forward",
            [this](const request& req) { return forwarding.handle(req); }, forwarding.route());
        server_options data_opts =
            make_server_options("data", settings.server.listen, settings.server);
        // Fewer than server.max_connections when the open-files limit cannot hold them all
        // next to the admin listener and the upstream pools (fd_limit.hpp).
        data_opts.max_connections = apply_fd_limit(settings, thread_count(settings), *log);
        data_server = std::make_unique<http_server>(io.executors(), data_opts, data_routes, observe,
                                                    log, make_listener_tls(settings.server));
        if (data_server->is_tls()) {
            registry.add_source([this](std::string& out) {
                metrics::append_sample(out, "imagegate_tls_handshake_failures_total", "counter",
                                       "TLS handshakes on the data listener that failed or "
                                       "timed out.",
                                       data_server->tls_handshake_failures());
            });
        }
        server_options admin_opts =
            make_server_options("admin", settings.server.admin_listen, settings.server);
        admin_opts.max_connections = admin_max_connections;
        admin_server =
            std::make_unique<http_server>(io.executors(), admin_opts, admin.routes(), observe, log);
        registry.add_source(
            [this](std::string& out) { render_accept_errors(out, *data_server, *admin_server); });
    }

    // Handlers still pending when the threads stopped (a forced stop) are destroyed while
    // every io_context still exists: a session's frame on one context may own objects of
    // another (the listener state on worker 0, a flight's waiter timers on the others).
    ~impl() {
        io.stop();
        io.join();
        io.destroy_pending();
    }
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;

    // Any thread: not ready, stop accepting, wake the thread waiting in app::wait().
    void request_stop() {
        {
            const std::lock_guard lock(stop_mu);
            if (stop_requested) {
                return;
            }
            stop_requested = true;
        }
        ready.store(false);
        data_server->stop();
        stop_cv.notify_all();
    }

    // A thread that is not a worker: drain within server.drain_timeout, close the rest, let
    // the workers run out of work and join them. Concurrent callers wait for the first.
    void finish_shutdown() {
        IMAGEGATE_CHECK(!on_worker_thread(), "the shutdown is finished by a non-worker thread");
        std::call_once(finish_once, [this] {
            request_stop();
            const auto drain_deadline =
                std::chrono::steady_clock::now() + settings.server.drain_timeout;
            if (!data_server->wait_drained(drain_deadline)) {
                log->warn("drain timeout: closing {} connection(s) with requests in flight",
                          data_server->active_sessions());
            }
            data_server->close_all();
            admin_server->close_all();
            warmer.shutdown();
            client->shutdown();
            if (redis) {
                redis->stop();
            }
            if (auto* s = signals.load()) {
                s->cancel();
            }
            io.release();
            // Everything is closed; the threads return once the last handlers ran. A handler
            // that never completes would hang exit, so give it a bound.
            if (!io.wait_until(std::chrono::steady_clock::now() + std::chrono::seconds(2))) {
                log->warn("I/O did not finish after closing all connections; stopping");
                io.stop();
            }
            io.join();
            log->info("shutdown complete");
            log->flush();
        });
    }

    reload_outcome reload() {
        return reloader.reload({.log = *log,
                                .access = access,
                                .auth = auth,
                                .admin = admin,
                                .data_server = *data_server,
                                .images = images,
                                .gate = *gate});
    }
};

app::app(config::settings s, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<impl>(std::move(s), std::move(log))) {}

app::~app() {
    IMAGEGATE_CHECK(!on_worker_thread(), "an app is destroyed by a thread that is not a worker");
    shutdown();
}

void app::start() {
    auto& m = *impl_;
    IMAGEGATE_CHECK(!m.started, "app::start() is called once");
    m.started = true;
    m.data_server->start();
    m.admin_server->start();
    if (m.redis) {
        m.redis->start();
    }
    m.io.start();
    m.ready.store(true);
    m.log->info("imagegate listening on {} (port {}), admin on {} (port {}), {} thread(s)",
                listener_url(m.data_server->is_tls(), m.settings.server.listen, data_port()),
                data_port(), listener_url(false, m.settings.server.admin_listen, admin_port()),
                admin_port(), m.io.size());
    // Written at once: supervisors and tests read the ports from this line, and stdout is
    // block-buffered when it is a pipe (info lines are otherwise flushed with the next warning).
    m.log->flush();
}

int app::run_until_signal() {
    auto& m = *impl_;
    // Registered before the threads start (when start() was not called yet): from here on
    // SIGINT, SIGTERM and SIGHUP never take their default action. The hooks run on worker
    // 0; shutdown() from there only requests the stop, which wait() below carries out. The
    // handler outlives the workers (declared before wait() joins them).
    signal_handler signals(m.io.executor(0),
                           {.stop =
                                [this, &m](int sig) {
                                    m.log->info("signal {} received: draining (up to {} ms)", sig,
                                                m.settings.server.drain_timeout.count());
                                    shutdown();
                                },
                            .reload =
                                [&m] {
                                    m.log->info("SIGHUP received: reloading the configuration");
                                    m.reload();
                                }});
    signals.start();
    m.signals.store(&signals);
    if (!m.started) {
        start();
    }
    wait();
    m.signals.store(nullptr);
    return 0;
}

void app::shutdown() {
    auto& m = *impl_;
    m.request_stop();
    if (on_worker_thread()) {
        // A worker cannot wait for the drain it takes part in: wait() (run_until_signal) or
        // the destructor finishes the shutdown on a thread of its own.
        return;
    }
    m.finish_shutdown();
}

void app::wait() {
    auto& m = *impl_;
    IMAGEGATE_CHECK(!on_worker_thread(), "app::wait() is called by a thread that is not a worker");
    {
        std::unique_lock lock(m.stop_mu);
        m.stop_cv.wait(lock, [&m] { return m.stop_requested; });
    }
    m.finish_shutdown();
}

void app::set_config_source(std::function<config::load_result()> source) {
    IMAGEGATE_CHECK(!impl_->started, "the configuration source is set before start()");
    impl_->reloader.set_source(std::move(source));
}

reload_outcome app::reload() { return impl_->reload(); }

std::uint16_t app::data_port() const noexcept { return impl_->data_server->port(); }
std::uint16_t app::admin_port() const noexcept { return impl_->admin_server->port(); }
metrics::registry& app::metrics() noexcept { return impl_->registry; }

time_source& app::time() noexcept { return impl_->time; }
write_effects& app::writes() noexcept { return impl_->writes; }
asio::any_io_executor app::executor(std::size_t worker) const { return impl_->io.executor(worker); }

}  // namespace imagegate::gateway
