#include "gateway/app.hpp"

#include "config/parse.hpp"
#include "gateway/admin.hpp"
#include "gateway/http_server.hpp"
#include "gateway/image_handler.hpp"
#include "gateway/logging.hpp"
#include "gateway/metrics.hpp"

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
                                   const std::string& host_port,
                                   const config::server_settings& s) {
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
    return o;
}

unsigned thread_count(const config::settings& s) {
    if (s.server.threads != 0) {
        return s.server.threads;
    }
    return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace

struct app::impl {
    config::settings settings;
    std::shared_ptr<spdlog::logger> log;
    // Declared first so it is destroyed last: everything below may own I/O objects.
    asio::io_context ioc;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    metrics::registry registry;
    std::atomic<bool> ready{false};
    image_handler images;
    admin_handler admin;
    std::unique_ptr<http_server> data_server;
    std::unique_ptr<http_server> admin_server;
    std::vector<std::thread> threads;
    std::once_flag shutdown_once;

    impl(config::settings s, std::shared_ptr<spdlog::logger> l)
        : settings(std::move(s)),
          log(std::move(l)),
          ioc(static_cast<int>(thread_count(settings))),
          admin(registry, ready, purge_hooks{}) {
        const bool access = settings.log.access_log;
        auto observe = [this, access](const exchange_record& rec) {
            registry.record(rec.route, rec.status, rec.duration);
            if (access) {
                log_access(*log, rec);
            }
        };
        auto handle_image = [this](request req) { return images.handle(req); };
        auto handle_admin = [this](request req) { return admin.handle(req); };
        data_server = std::make_unique<http_server>(
            ioc, make_server_options(ioc, "data", settings.server.listen, settings.server),
            handle_image, observe, log);
        server_options admin_opts =
            make_server_options(ioc, "admin", settings.server.admin_listen, settings.server);
        admin_opts.max_connections = 64;
        admin_server =
            std::make_unique<http_server>(ioc, admin_opts, handle_admin, observe, log);
    }
};

app::app(config::settings s, std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<impl>(std::move(s), std::move(log))) {}

app::~app() {
    shutdown();
}

void app::start() {
    auto& m = *impl_;
    m.work.emplace(m.ioc.get_executor());
    m.data_server->start();
    m.admin_server->start();
    const unsigned n = thread_count(m.settings);
    for (unsigned i = 0; i < n; ++i) {
        m.threads.emplace_back([&m] { m.ioc.run(); });
    }
    m.ready.store(true);
    m.log->info("imagegate listening on {} (port {}), admin on {} (port {}), {} thread(s)",
                m.settings.server.listen, data_port(), m.settings.server.admin_listen,
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
        while (m.data_server->active_sessions() > 0 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        if (const auto left = m.data_server->active_sessions(); left > 0) {
            m.log->warn("drain timeout: closing {} connection(s) with requests in flight", left);
        }
        m.data_server->close_all();
        m.admin_server->close_all();
        m.work.reset();
        // Everything is closed; the threads return once the last handlers ran. A handler
        // that never completes would hang exit, so give it a bound.
        const auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (!m.ioc.stopped() && std::chrono::steady_clock::now() < hard) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        if (!m.ioc.stopped()) {
            m.log->warn("I/O did not finish after closing all connections; stopping");
            m.ioc.stop();
        }
        for (auto& t : m.threads) {
            t.join();
        }
        m.threads.clear();
        m.log->info("shutdown complete");
        m.log->flush();
    });
}

std::uint16_t app::data_port() const noexcept {
    return impl_->data_server->port();
}
std::uint16_t app::admin_port() const noexcept {
    return impl_->admin_server->port();
}
metrics::registry& app::metrics() noexcept {
    return impl_->registry;
}

}  // namespace imagegate::gateway
