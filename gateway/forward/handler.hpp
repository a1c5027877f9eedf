// Forwarded calls: every request under /client/v4/ that the cache does not answer goes
// upstream through the gateway's shield (authorization, a budget slot, the 429 pause), with
// its body streamed up and the answer streamed back.
#pragma once

#include "gateway/core/time_source.hpp"
#include "gateway/http/router.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace imagegate::upstream {
class client;
}

namespace imagegate::admission {
class gate;
}

namespace imagegate::gateway {

class authorizer;
class write_effects;

/// Settings of the forwarding handler (mapped from config by the composition root).
struct forward_options {
    /// auth.mode = passthrough: the caller's credential goes upstream, and its own shield.
    bool passthrough = false;
    /// The path prefix forwarded (the upstream base path as clients address it).
    std::string base_path = "/client/v4";
    /// [forward] max_body_bytes: larger bodies get 413.
    std::uint64_t max_body_bytes = 10 * 1024 * 1024 + 64 * 1024;
    /// [forward] body_timeout: the longest a request body may take to arrive.
    std::chrono::milliseconds body_timeout{60000};
    /// upstream.request_timeout: the upstream's part of the call (added to the body's).
    std::chrono::milliseconds request_timeout{10000};
    /// shield.max_queue_wait: the longest a call waits for its budget slot.
    std::chrono::milliseconds max_queue_wait{1000};
    /// Image writes (PATCH/DELETE of an image, uploads) keep the cache right through this
    /// (the composition root's; null: writes are forwarded without touching the cache).
    write_effects* writes = nullptr;
    /// Clock of the gate's decisions (the composition root's time_source).
    const time_source* time = &time_source::real();
};

/// The forwarding handler. Owned by the composition root; shares the upstream client and the
/// gate with the image read path. Thread-safety: handle() may run on every worker at once.
class forward_handler {
public:
    /// `auth` decides token-mode calls (authorizer::decide_forward: the client keys' forward
    /// grants, anonymous loopback methods; reload-aware) and must outlive the handler.
    forward_handler(upstream::client& client, std::shared_ptr<admission::gate> gate,
                    const authorizer& auth, forward_options opts,
                    std::shared_ptr<spdlog::logger> log);
    ~forward_handler();
    forward_handler(const forward_handler&) = delete;
    forward_handler& operator=(const forward_handler&) = delete;

    /// Answers one request (any method) under options().base_path: refused at once (401,
    /// 403, 404 outside the base path), or forwarded by a coroutine.
    handler_result handle(const request& req);

    /// The route options a forwarding route needs: the body streamed up to max_body_bytes
    /// (chunked too) within body_timeout, the answer streamed back.
    route_options route() const;

    /// Forwarded calls by method and status class, refusals, bytes both ways.
    void render_metrics(std::string& out) const;

    struct impl;

private:
    std::shared_ptr<impl> impl_;
};

}  // namespace imagegate::gateway
