#include "gateway/upstream/client.hpp"

#include "gateway/upstream/headers.hpp"
#include "gateway/version.hpp"

#include <boost/asio/co_spawn.hpp>

#include <spdlog/logger.h>

#include <stdexcept>

namespace imagegate::upstream {

namespace {

std::shared_ptr<const connection_options> make_connection_options(
    const client_options& o, std::shared_ptr<asio::ssl::context> tls_ctx) {
    if (o.host.empty()) {
        throw std::invalid_argument("upstream host is empty");
    }
    if (o.pool.max_connections == 0) {
        throw std::invalid_argument("upstream max_connections must be at least 1");
    }
    if (!o.tls && !o.allow_plaintext) {
        throw std::invalid_argument("plaintext upstream requires allow_plaintext");
    }
    if (o.tls && !tls_ctx) {
        throw std::invalid_argument("TLS upstream requires a TLS context");
    }
    auto c = std::make_shared<connection_options>();
    c->host = o.host;
    c->port = o.port;
    c->server_name = o.server_name;
    c->tls = o.tls ? std::move(tls_ctx) : nullptr;
    c->header_limit = o.max_header_bytes;
    c->body_limit = o.max_body_bytes;
    return c;
}

}  // namespace

client::client(asio::any_io_executor ex, client_options opts,
               std::shared_ptr<asio::ssl::context> tls_ctx, std::shared_ptr<spdlog::logger> log)
    : opts_(std::move(opts)),
      stats_(std::make_shared<upstream::stats>()),
      log_(std::move(log)),
      host_header_(host_header_value(opts_.server_name.empty() ? opts_.host : opts_.server_name,
                                     opts_.port, opts_.tls)),
      pool_(std::move(ex), make_connection_options(opts_, std::move(tls_ctx)), opts_.pool,
            stats_, log_) {}

client::~client() = default;

void client::shutdown() { pool_.shutdown(); }

http::request<http::empty_body> client::make_request(const std::string& target,
                                                     const credential* cred) const {
    // Exactly these headers: the upstream sees the same request whichever client asked,
    // nothing of the downstream request leaks through, and identity encoding keeps the body
    // parseable in place (no gzip to undo before validation).
    http::request<http::empty_body> req{http::verb::get, join_target(opts_.base_path, target),
                                        11};
    req.set(http::field::host, host_header_);
    if (cred != nullptr) {
        if (!cred->bearer.empty()) {
            req.set(http::field::authorization, "Bearer " + cred->bearer);
        } else {
            req.set("X-Auth-Email", cred->email);
            req.set("X-Auth-Key", cred->key);
        }
    } else if (!opts_.token.empty()) {
        req.set(http::field::authorization, "Bearer " + opts_.token);
    }
    req.set(http::field::accept, "application/json");
    req.set(http::field::accept_encoding, "identity");
    req.set(http::field::user_agent, std::string("imagegate/") + std::string(version));
    return req;
}

asio::awaitable<boost::system::result<response>> client::fetch(
    std::string target, clock::time_point deadline, std::shared_ptr<const credential> cred) {
    const auto req = make_request(target, cred.get());
    for (int attempt = 0; attempt < 2; ++attempt) {
        const auto mode = attempt == 0 ? acquire_mode::any : acquire_mode::fresh;
        auto acquired = co_await pool_.acquire(deadline, mode);
        if (!acquired) {
            const auto ec = acquired.error();
            // Connect failures were logged by the pool with their phase and lower-layer code.
            if (log_ && (ec == errc::pool_exhausted || ec == errc::shutting_down)) {
                log_->warn("upstream fetch failed: target={} category={} value={} phase=acquire",
                           target, ec.category().name(), ec.value());
            }
            co_return ec;
        }
        lease l = std::move(*acquired);
        const bool reused = l.is_reused();
        if (reused) {
            stats_->reuses.fetch_add(1, std::memory_order_relaxed);
        }
        connection& conn = l.conn();
        // The exchange runs on the connection's strand (the stream's executor) so Beast's
        // expiry handler and our operations never run concurrently.
        auto r = co_await asio::co_spawn(conn.get_executor(), conn.exchange(req, deadline),
                                         use_awaitable);
        if (r) {
            if (conn.is_reusable()) {
                l.mark_reusable();
            }
            stats_->count_status(r->status);
            stats_->latency.observe(r->latency);
            co_return std::move(*r);
        }
        const failure f = r.error();
        if (pool_.is_shutting_down()) {
            co_return make_error_code(errc::shutting_down);  // our own abort, not the upstream's
        }
        // RFC 9110 §9.2.2: GET is idempotent. A reused connection that failed before any
        // response byte was most likely closed by the upstream while idle; one retry on a
        // fresh connection is safe. Never after response bytes (the request was processed)
        // and never after our own deadline.
        const bool retry = attempt == 0 && reused && !f.response_started &&
                           f.ec != beast::error::timeout && clock::now() < deadline;
        if (retry) {
            stats_->retries.fetch_add(1, std::memory_order_relaxed);
            if (log_) {
                log_->debug("upstream reused connection failed before the answer, retrying: "
                            "phase={} category={} value={}",
                            to_string(f.phase), f.ec.category().name(), f.ec.value());
            }
            continue;  // `l` is released (closed) by the loop iteration's end
        }
        const errc e = classify(f);
        stats_->count_error(e);
        if (log_) {
            log_->warn("upstream fetch failed: target={} error={} phase={} category={} value={} "
                       "message={}",
                       target, make_error_code(e).message(), to_string(f.phase),
                       f.ec.category().name(), f.ec.value(), f.ec.message());
        }
        co_return make_error_code(e);
    }
    co_return make_error_code(errc::internal_error);  // unreachable: the loop returns
}

}  // namespace imagegate::upstream
