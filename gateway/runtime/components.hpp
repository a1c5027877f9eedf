// The composition root's factories: each component built from the settings (listener
// options, the TLS context, the upstream client, the gate, the Redis tier, the image policy)
// and the metric sources the root registers. app.cpp wires what these build.
#pragma once

#include "cache/sharded_cache.hpp"
#include "config/settings.hpp"
#include "gateway/admin/handler.hpp"
#include "gateway/core/time_source.hpp"
#include "gateway/forward/handler.hpp"
#include "gateway/http/server.hpp"
#include "gateway/image/handler.hpp"

#include <boost/asio/any_io_executor.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate {
class workers;
}

namespace imagegate::admission {
class gate;
}

namespace imagegate::upstream {
class client;
}

namespace imagegate::fleet {
class redis_clients;
class l2_cache;
}  // namespace imagegate::fleet

namespace imagegate::gateway {

/// A listener's options from `host_port` and the server settings; throws on a bad address.
server_options make_server_options(std::string name, const std::string& host_port,
                                   const config::server_settings& s);
/// The data listener's TLS context, or null without server.tls_cert.
std::shared_ptr<asio::ssl::context> make_listener_tls(const config::server_settings& s);
/// `http[s]://host:port` for the start-up line (IPv6 hosts bracketed).
std::string listener_url(bool tls, const std::string& host_port, std::uint16_t port);
/// server.threads, or one per core when 0.
unsigned thread_count(const config::settings& s);
cache::options cache_options(const config::cache_settings& c);
image_policy image_policy_from(const config::settings& s, const time_source& time);
forward_options forward_options_from(const config::settings& s, const time_source& time,
                                     write_effects* writes);
/// The shield every upstream call passes: local, or the fleet's with `redis`.
std::shared_ptr<admission::gate> make_gate(const config::settings& s, const time_source& time,
                                           fleet::redis_clients* redis,
                                           std::shared_ptr<spdlog::logger> log);
std::unique_ptr<upstream::client> make_client(std::vector<asio::any_io_executor> executors,
                                              const config::settings& s,
                                              std::shared_ptr<spdlog::logger> log);
/// The Redis tier's clients, or null without redis.url.
std::unique_ptr<fleet::redis_clients> make_redis(const workers& io, const config::settings& s,
                                                 std::shared_ptr<fleet::l2_cache>& l2,
                                                 std::shared_ptr<spdlog::logger> log);
std::shared_ptr<fleet::l2_cache> make_l2(fleet::redis_clients* redis, cache::sharded_cache& l1,
                                         const config::settings& s,
                                         std::shared_ptr<spdlog::logger> log);
fleet_hooks make_fleet_hooks(fleet::redis_clients* redis, std::shared_ptr<fleet::l2_cache> l2);
void render_cache_metrics(std::string& out, const cache::stats& c, std::uint64_t max_bytes);
void render_accept_errors(std::string& out, const http_server& data, const http_server& admin);

}  // namespace imagegate::gateway
