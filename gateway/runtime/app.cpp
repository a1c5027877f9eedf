#include "gateway/runtime/app.hpp"

#include "cache/sharded_cache.hpp"
#include "config/parse.hpp"
#include "gateway/admin/handler.hpp"
#include "gateway/auth/authorizer.hpp"
#include "gateway/http/server.hpp"
#include "gateway/image/handler.hpp"
#include "gateway/runtime/fd_limit.hpp"
#include "gateway/runtime/logging.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/upstream/tls.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <spdlog/spdlog.h>

#include <csignal>
#include <stdexcept>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace imagegate::gateway {
namespace {

// Turns a validated HOST:PORT into listener options; a host name is resolved once, here.
server_options make_server_options(asio::io_context& ioc, std::string name,
                                   const std::string& host_port, const config::server_settings& s,
                                   std::vector<asio::any_io_executor> session_executors) {
    const auto hp = config::parse_host_port(host_port);
    if (!hp) {
        throw std::invalid_argument("invalid listen address " + host_port);
    }
    server_options o;
    o.name = std::move(name);
    o.host = hp->host;
    o.port = hp->port;
    boost::system::error_code ec;
    asio::ip::make_address(o.host, ec);
    if (ec) {
        asio::ip::tcp::resolver resolver(ioc);
        const auto results = resolver.resolve(o.host, "", ec);
        if (ec || results.empty()) {
            throw std::invalid_argument("cannot resolve listen host " + o.host);
        }
        o.host = results.begin()->endpoint().address().to_string();
    }
    o.max_connections = s.max_connections;
    o.max_header_bytes = s.max_header_bytes;
    o.header_timeout = s.header_timeout;
    o.idle_timeout = s.idle_timeout;
    o.write_timeout = s.write_timeout;
    // One io_context per I/O thread: sessions spread over them, never on strands.
    o.single_threaded = true;
    o.session_executors = std::move(session_executors);
    return o;
}

// The data listener's TLS context when server.tls_cert is set, null for plain HTTP. main()
// builds it once before (exit 2 on failure), so a throw here means the files changed since.
std::shared_ptr<asio::ssl::context> make_listener_tls(const config::server_settings& s) {
    if (s.tls_cert.empty()) {
        return nullptr;
    }
    return make_listener_tls_context(s.tls_cert, s.tls_key).value();
}

// "https://HOST:PORT" for the start-up log, with the bound port (listen may say port 0).
std::string listener_url(bool tls, const std::string& host_port, std::uint16_t port) {
    const auto hp = config::parse_host_port(host_port);
    std::string host = hp ? hp->host : host_port;
    if (host.find(':') != std::string::npos) {
        host = "[" + host + "]";  // IPv6 literal (RFC 3986 §3.2.2)
    }
    return (tls ? "https://" : "http://") + host + ":" + std::to_string(port);
}

unsigned thread_count(const config::settings& s) {
    if (s.server.threads != 0) {
        return s.server.threads;
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

cache::options cache_options(const config::cache_settings& c) {
    return {.max_bytes = c.max_bytes,
            .max_entries = c.max_entries,
            .max_entry_bytes = c.max_entry_bytes,
            .shards = c.shards};
}

image_policy image_policy_from(const config::settings& s) {
    return {.ttl = s.cache.ttl,
            .draft_ttl = s.cache.draft_ttl,
            .negative_ttl = s.cache.negative_ttl,
            .stale_while_revalidate = s.cache.stale_while_revalidate,
            .stale_if_error = s.cache.stale_if_error,
            .request_timeout = s.upstream.request_timeout,
            .coalesce_timeout = s.shield.coalesce_timeout,
            .honor_client_no_cache = s.shield.honor_client_no_cache,
            .budget = s.shield.budget,
            .budget_window = s.shield.window,
            .burst = s.shield.burst,
            .unproven_budget = s.shield.unproven_budget,
            .passthrough = s.auth.mode == "passthrough",
            .proof_ttl = s.auth.proof_ttl};
}

std::unique_ptr<upstream::client> make_client(asio::io_context& ioc, const config::settings& s,
                                              std::shared_ptr<spdlog::logger> log) {
    const auto url = config::parse_upstream_url(s.upstream.url);
    if (!url) {
        throw std::invalid_argument("invalid upstream url");
    }
    std::shared_ptr<asio::ssl::context> tls;
    if (url->tls) {
        tls = upstream::make_tls_context({.ca_file = s.upstream.ca_file, .ca_pem = {}}).value();
    }
    upstream::client_options o;
    o.host = url->host;
    o.port = url->port;
    o.tls = url->tls;
    o.allow_plaintext = s.upstream.allow_plaintext;
    o.base_path = url->base_path;
    // Passthrough: callers' own credentials go upstream; the gateway's token never does.
    o.token = s.auth.mode == "passthrough" ? std::string() : s.secret.upstream_token;
    o.max_body_bytes = s.upstream.max_body_bytes;
    o.pool.max_connections = s.upstream.max_connections;
    o.pool.connect_timeout = s.upstream.connect_timeout;
    o.pool.idle_timeout = s.upstream.pool_idle_timeout;
    o.pool.max_requests_per_connection = s.upstream.max_requests_per_connection;
    o.pool.acquire_timeout = s.upstream.acquire_timeout;
    // The client, its pool and every fetch live on the first io_context, which one thread
    // runs (see app::impl).
    o.pool.single_threaded = true;
    return std::make_unique<upstream::client>(ioc.get_executor(), std::move(o), std::move(tls),
                                              std::move(log));
}

void render_cache_metrics(std::string& out, const cache::stats& c, std::uint64_t max_bytes) {
    using metrics::append_sample;
    append_sample(out, "imagegate_cache_bytes", "gauge",
                  "Accounted bytes of the entries in the cache.", c.bytes);
    append_sample(out, "imagegate_cache_max_bytes", "gauge", "The cache's byte budget.", max_bytes);
    append_sample(out, "imagegate_cache_entries", "gauge", "Entries in the cache.", c.entries);
    append_sample(out, "imagegate_cache_evictions_total", "counter",
                  "Entries evicted to make room (LRU).", c.evictions);
    append_sample(out, "imagegate_cache_rejected_too_large_total", "counter",
                  "Entries not stored because they exceed cache.max_entry_bytes.",
                  c.rejected_too_large);
    append_sample(out, "imagegate_cache_purge_raced_total", "counter",
                  "Upstream answers not stored because their key or account was purged while "
                  "they were fetched (they still answered their requests).",
                  c.purge_raced);
}

void render_accept_errors(std::string& out, const http_server& data, const http_server& admin) {
    metrics::append_header(out, "imagegate_accept_errors_total", "counter",
                           "Failed accepts by listener and cause: emfile (the process's "
                           "open-files limit), enfile (the system's), other.");
    for (const auto& [name, server] : {std::pair{"data", &data}, std::pair{"admin", &admin}}) {
        const auto c = server->accept_errors();
        for (const auto& [reason, n] :
             {std::pair{"emfile", c.emfile}, std::pair{"enfile", c.enfile},
              std::pair{"other", c.other}}) {
            metrics::append_sample(
                out, "imagegate_accept_errors_total", "", "", n,
                std::string("listener=\"") + name + "\",reason=\"" + reason + "\"");
        }
    }
}

}  // namespace

/// An io_context whose pending handlers can be destroyed on demand (see app::impl::~impl).
class io_thread_context : public asio::io_context {
public:
    io_thread_context() : asio::io_context(1) {}
    void destroy_pending() { shutdown(); }
};

struct app::impl {
    config::settings settings;
    std::shared_ptr<spdlog::logger> log;
    // The threading model (tests/bench/PERFORMANCE.md): one io_context per I/O thread, each
    // run by exactly one thread, so no strand is needed anywhere. contexts[0] also runs the
    // listeners' acceptors, the upstream client (pool, connections) and every fetch;
    // sessions are spread over all of them. Declared first so they are destroyed last:
    // everything below may own I/O objects.
    std::vector<std::unique_ptr<io_thread_context>> contexts;
    asio::io_context& ioc;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;
    metrics::registry registry;
    std::atomic<bool> ready{false};
    cache::sharded_cache cache;
    std::unique_ptr<upstream::client> client;
    authorizer auth;
    image_handler images;
    admin_handler admin;
    std::unique_ptr<http_server> data_server;
    std::unique_ptr<http_server> admin_server;
    std::vector<std::thread> threads;
    std::once_flag shutdown_once;

    impl(config::settings s, std::shared_ptr<spdlog::logger> l)
        : settings(std::move(s)),
          log(std::move(l)),
          contexts(make_contexts(thread_count(settings))),
          ioc(*contexts.front()),
          cache(cache_options(settings.cache)),
          client(make_client(ioc, settings, log)),
          auth(settings.auth.client_keys),
          images(cache, *client, auth, image_policy_from(settings), ioc.get_executor(), log),
          admin(registry, ready,
                purge_hooks{
                    [this](std::string_view account, std::string_view id) {
                        return cache.erase(cache::key(account, id));
                    },
                    [this](std::string_view account) { return cache.erase_account(account); }},
                settings.secret.admin_token) {
        registry.add_source([this](std::string& out) {
            images.render_metrics(out);
            render_cache_metrics(out, cache.snapshot(), settings.cache.max_bytes);
            client->stats().render(out);
        });
        if (settings.auth.mode == "passthrough") {
            if (!settings.secret.upstream_token.empty()) {
                log->warn("auth.mode = passthrough: the upstream token is set but never used");
            }
        } else if (settings.secret.upstream_token.empty()) {
            log->warn(
                "no upstream token (CLOUDFLARE_API_TOKEN or upstream.token_file): "
                "requests go upstream without Authorization");
        }
        std::shared_ptr<const access_log> access;
        if (settings.log.access_log) {
            access = std::make_shared<const access_log>(log, settings.log);
        }
        auto observe = [this, access](const exchange_record& rec) {
            registry.record(rec.route, rec.status, rec.duration);
            if (access) {
                access->write(rec);
            }
        };
        auto handle_image = [this](request req) { return images.handle(req); };
        auto handle_admin = [this](request req) { return admin.handle(req); };
        server_options data_opts =
            make_server_options(ioc, "data", settings.server.listen, settings.server, executors());
        // Fewer than server.max_connections when the open-files limit cannot hold them all
        // next to the admin listener and the upstream pools (fd_limit.hpp).
        data_opts.max_connections = apply_fd_limit(settings, thread_count(settings), *log);
        data_server = std::make_unique<http_server>(ioc, data_opts, handle_image, observe, log,
                                                    make_listener_tls(settings.server));
        if (data_server->is_tls()) {
            registry.add_source([this](std::string& out) {
                metrics::append_sample(out, "imagegate_tls_handshake_failures_total", "counter",
                                       "TLS handshakes on the data listener that failed or "
                                       "timed out.",
                                       data_server->tls_handshake_failures());
            });
        }
        server_options admin_opts = make_server_options(ioc, "admin", settings.server.admin_listen,
                                                        settings.server, executors());
        admin_opts.max_connections = admin_max_connections;
        admin_server = std::make_unique<http_server>(ioc, admin_opts, handle_admin, observe, log);
        registry.add_source(
            [this](std::string& out) { render_accept_errors(out, *data_server, *admin_server); });
    }

    // Handlers still pending when the threads stopped (a forced stop) are destroyed while
    // every io_context still exists: a session's frame on one context may own objects of
    // another (the listener state on contexts[0], a flight's waiter timers on the others).
    ~impl() {
        for (auto& c : contexts) {
            c->destroy_pending();
        }
    }
    impl(const impl&) = delete;
    impl& operator=(const impl&) = delete;

    static std::vector<std::unique_ptr<io_thread_context>> make_contexts(unsigned n) {
        std::vector<std::unique_ptr<io_thread_context>> out;
        for (unsigned i = 0; i < n; ++i) {
            out.push_back(std::make_unique<io_thread_context>());
        }
        return out;
    }

    std::vector<asio::any_io_executor> executors() const {
        std::vector<asio::any_io_executor> out;
        for (const auto& c : contexts) {
            out.push_back(c->get_executor());
        }
        return out;
    }

    bool all_stopped() const {
        for (const auto& c : contexts) {
            if (!c->stopped()) {
                return false;
            }
        }
        return true;
    }
};

app::app(config::settings s, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<impl>(std::move(s), std::move(log))) {}

app::~app() { shutdown(); }

void app::start() {
    auto& m = *impl_;
    for (auto& c : m.contexts) {
        m.work.push_back(asio::make_work_guard(*c));
    }
    m.data_server->start();
    m.admin_server->start();
    const auto n = static_cast<unsigned>(m.contexts.size());
    for (auto& c : m.contexts) {
        m.threads.emplace_back([&ctx = *c] { ctx.run(); });
    }
    m.ready.store(true);
    m.log->info("imagegate listening on {} (port {}), admin on {} (port {}), {} thread(s)",
                listener_url(m.data_server->is_tls(), m.settings.server.listen, data_port()),
                data_port(), listener_url(false, m.settings.server.admin_listen, admin_port()),
                admin_port(), n);
}

int app::run_until_signal() {
    auto& m = *impl_;
    std::promise<int> signalled;
    auto fut = signalled.get_future();
    asio::signal_set signals(m.ioc, SIGINT, SIGTERM);
    signals.async_wait([&signalled](const boost::system::error_code& ec, int sig) {
        signalled.set_value(ec ? 0 : sig);
    });
    const int sig = fut.get();
    m.log->info("signal {} received: draining (up to {} ms)", sig,
                m.settings.server.drain_timeout.count());
    shutdown();
    return 0;
}

void app::shutdown() {
    auto& m = *impl_;
    std::call_once(m.shutdown_once, [&m] {
        m.ready.store(false);
        m.data_server->stop();
        const auto deadline = std::chrono::steady_clock::now() + m.settings.server.drain_timeout;
        while (m.data_server->active_sessions() > 0 &&
               std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (const auto left = m.data_server->active_sessions(); left > 0) {
            m.log->warn("drain timeout: closing {} connection(s) with requests in flight", left);
        }
        m.data_server->close_all();
        m.admin_server->close_all();
        m.client->shutdown();
        m.work.clear();
        // Everything is closed; the threads return once the last handlers ran. A handler
        // that never completes would hang exit, so give it a bound.
        const auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (!m.all_stopped() && std::chrono::steady_clock::now() < hard) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        if (!m.all_stopped()) {
            m.log->warn("I/O did not finish after closing all connections; stopping");
            for (auto& c : m.contexts) {
                c->stop();
            }
        }
        for (auto& t : m.threads) {
            t.join();
        }
        m.threads.clear();
        m.log->info("shutdown complete");
        m.log->flush();
    });
}

std::uint16_t app::data_port() const noexcept { return impl_->data_server->port(); }
std::uint16_t app::admin_port() const noexcept { return impl_->admin_server->port(); }
metrics::registry& app::metrics() noexcept { return impl_->registry; }

}  // namespace imagegate::gateway
