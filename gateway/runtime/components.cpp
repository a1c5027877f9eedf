#include "gateway/runtime/components.hpp"

#include "cache/sharded_cache.hpp"
#include "config/load.hpp"
#include "config/parse.hpp"
#include "gateway/admin/handler.hpp"
#include "gateway/admission/local_gate.hpp"
#include "gateway/auth/authorizer.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/fleet/budget_gate.hpp"
#include "gateway/fleet/redis_clients.hpp"
#include "gateway/http/server.hpp"
#include "gateway/image/handler.hpp"
#include "gateway/runtime/access_log.hpp"
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

// Turns a validated HOST:PORT into listener options; a host name is resolved once, here.
server_options make_server_options(std::string name, const std::string& host_port,
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
        asio::io_context resolving;  // a blocking resolve, before any thread runs
        asio::ip::tcp::resolver resolver(resolving);
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
    o.body_timeout = s.header_timeout;  // no route of these listeners takes a body yet
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

image_policy image_policy_from(const config::settings& s, const time_source& time) {
    return {.ttl = s.cache.ttl,
            .draft_ttl = s.cache.draft_ttl,
            .negative_ttl = s.cache.negative_ttl,
            .stale_while_revalidate = s.cache.stale_while_revalidate,
            .stale_if_error = s.cache.stale_if_error,
            .request_timeout = s.upstream.request_timeout,
            .max_queue_wait = s.shield.max_queue_wait,
            .coalesce_timeout = s.shield.coalesce_timeout,
            .honor_client_no_cache = s.shield.honor_client_no_cache,
            .passthrough = s.auth.mode == "passthrough",
            .proof_ttl = s.auth.proof_ttl,
            .time = &time};
}

forward_options forward_options_from(const config::settings& s, const time_source& time,
                                     write_effects* writes) {
    forward_options o;
    o.passthrough = s.auth.mode == "passthrough";
    o.request_timeout = s.upstream.request_timeout;
    o.max_queue_wait = s.shield.max_queue_wait;
    o.max_body_bytes = s.forward.max_body_bytes;
    o.body_timeout = s.forward.body_timeout;
    o.writes = writes;
    o.time = &time;
    return o;
}

// The shield every upstream call passes: in this process, or with `[redis] url` the fleet's
// (gateway/fleet/budget_gate.hpp: the same reservations on Redis, 1/N locally when Redis is
// down). Callers cannot tell which.
std::shared_ptr<admission::gate> make_gate(const config::settings& s, const time_source& time,
                                           fleet::redis_clients* redis,
                                           std::shared_ptr<spdlog::logger> log) {
    admission::local_gate_options local{.budget = {.budget = s.shield.budget,
                                                   .window = s.shield.window,
                                                   .burst = s.shield.burst,
                                                   .background_reserve_percent = 20},
                                        .limit = {},
                                        .passthrough = s.auth.mode == "passthrough",
                                        .unproven_budget = s.shield.unproven_budget,
                                        .max_credentials = s.shield.max_credentials,
                                        .time = &time};
    if (redis == nullptr) {
        return std::make_shared<admission::local_gate>(local);
    }
    return fleet::make_fleet_gate(
        fleet::fleet_gate_options{.prefix = redis->key_prefix(),
                                  .op_timeout = redis->op_timeout(),
                                  .instances = static_cast<std::uint32_t>(s.fleet.instances),
                                  .gate = local},
        [redis]() -> redis::client& { return redis->for_current_worker(); }, std::move(log));
}

std::unique_ptr<upstream::client> make_client(std::vector<asio::any_io_executor> executors,
                                              const config::settings& s,
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
    // One pool per worker: a miss runs on the worker of its session (see app::impl).
    return std::make_unique<upstream::client>(std::move(executors), std::move(o), std::move(tls),
                                              std::move(log));
}

// The fleet tier's connections, only with `[redis] url`. The subscriber runs on worker 0;
// its handlers reach the L2 cache through `l2`, which is set before anything starts.
std::unique_ptr<fleet::redis_clients> make_redis(const workers& io, const config::settings& s,
                                                 std::shared_ptr<fleet::l2_cache>& l2,
                                                 std::shared_ptr<spdlog::logger> log) {
    if (s.redis.url.empty()) {
        return nullptr;
    }
    redis::subscriber_handlers h{.on_message =
                                     [&l2](std::string_view channel, std::string_view payload) {
                                         if (l2) {
                                             l2->on_message(channel, payload);
                                         }
                                     },
                                 .on_subscribed =
                                     [&l2] {
                                         if (l2) {
                                             l2->on_subscribed();
                                         }
                                     }};
    return std::make_unique<fleet::redis_clients>(io.executors(), io.executor(0), s, std::move(h),
                                                  std::move(log));
}

std::shared_ptr<fleet::l2_cache> make_l2(fleet::redis_clients* redis, cache::sharded_cache& l1,
                                         const config::settings& s,
                                         std::shared_ptr<spdlog::logger> log) {
    if (redis == nullptr) {
        return nullptr;
    }
    fleet::l2_options o;
    o.lease_timeout = s.fleet.lease_timeout;
    o.limits.max_body_bytes = s.upstream.max_body_bytes;
    return std::make_shared<fleet::l2_cache>(*redis, l1, o, std::move(log));
}

// /readyz and purge: what the fleet tier adds to the admin routes (nothing without Redis).
fleet_hooks make_fleet_hooks(fleet::redis_clients* redis, std::shared_ptr<fleet::l2_cache> l2) {
    if (redis == nullptr) {
        return {};
    }
    return {
        .broadcast = [l2](std::string account,
                          std::string id) { return l2->purge(std::move(account), std::move(id)); },
        .degraded = [redis] { return !redis->healthy(); }};
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

}  // namespace imagegate::gateway
