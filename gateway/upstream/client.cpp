#include "gateway/upstream/client.hpp"

#include "gateway/upstream/forward_headers.hpp"
#include "gateway/upstream/headers.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/version.hpp"
#include "gateway/core/workers.hpp"

#include <spdlog/logger.h>

#include <array>
#include <optional>
#include <stdexcept>
#include <string_view>

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
    // Config refuses these first (config/token.cpp); the message never shows the token.
    if (!is_header_safe(o.token) || !is_header_safe(o.host) || !is_header_safe(o.server_name)) {
        throw std::invalid_argument("upstream token or host contains control characters");
    }
    auto c = std::make_shared<connection_options>();
    c->host = o.host;
    c->port = o.port;
    c->server_name = o.server_name;
    c->tls = o.tls ? std::move(tls_ctx) : nullptr;
    c->header_limit = o.max_header_bytes;
    c->body_limit = o.max_body_bytes;
    if (c->tls) {
        c->sessions = std::make_shared<tls_session_cache>();
    }
    return c;
}

// The credential's header lines as pieces, viewing `cred` or `token_line` (the configured
// token's line, sent for a null `cred`), or nothing when a value is not header-safe (a CR or
// LF would start a header of its own). The config check and gateway/auth refuse such values
// first. One rule for reads and forwarded calls.
std::optional<std::array<std::string_view, 5>> credential_fields(const credential* cred,
                                                                 std::string_view token_line) {
    if (cred == nullptr) {
        return std::array<std::string_view, 5>{token_line, "", "", "", ""};
    }
    if (!cred->bearer.empty()) {
        if (!is_header_safe(cred->bearer)) {
            return std::nullopt;
        }
        return std::array<std::string_view, 5>{"Authorization: Bearer ", cred->bearer, "\r\n", "",
                                               ""};
    }
    if (!is_header_safe(cred->email) || !is_header_safe(cred->key)) {
        return std::nullopt;
    }
    return std::array<std::string_view, 5>{"X-Auth-Email: ", cred->email,
                                           "\r\nX-Auth-Key: ", cred->key, "\r\n"};
}

}  // namespace

client::client(std::vector<asio::any_io_executor> executors, client_options opts,
               std::shared_ptr<asio::ssl::context> tls_ctx, std::shared_ptr<spdlog::logger> log)
    : opts_(std::move(opts)),
      stats_(std::make_shared<upstream::stats>(executors.size())),
      log_(std::move(log)),
      fixed_fields_("Host: " +
                    host_header_value(opts_.server_name.empty() ? opts_.host : opts_.server_name,
                                      opts_.port, opts_.tls) +
                    "\r\nAccept: application/json\r\nAccept-Encoding: identity\r\n"
                    "User-Agent: imagegate/" +
                    std::string(version) + "\r\n"),
      token_field_(opts_.token.empty() ? std::string()
                                       : "Authorization: Bearer " + opts_.token + "\r\n"),
      forward_fields_(fixed_fields_.substr(0, fixed_fields_.find("Accept: ")) +
                      "Accept-Encoding: identity\r\nUser-Agent: imagegate/" + std::string(version) +
                      "\r\n") {
    if (executors.empty()) {
        throw std::invalid_argument("upstream client needs at least one worker");
    }
    // One connection options object (so one TLS session cache) and one connection limit for
    // the origin, shared by the pools of every worker.
    const auto conn_opts = make_connection_options(opts_, std::move(tls_ctx));
    limit_ = std::make_shared<connection_limit>(opts_.pool.max_connections, executors.size());
    for (std::size_t i = 0; i < executors.size(); ++i) {
        pools_.push_back(std::make_unique<upstream::pool>(std::move(executors[i]), conn_opts,
                                                          opts_.pool, stats_, log_, limit_, i));
    }
}

client::~client() = default;

void client::shutdown() {
    for (auto& p : pools_) {
        p->shutdown();
    }
}

std::size_t client::local_pool() const noexcept {
    // The worker index is the pool index when the client was given the workers in order (the
    // composition root does); otherwise find the pool whose worker this is.
    const std::size_t i = workers::current_index();
    if (i < pools_.size() && pools_[i]->runs_here()) {
        return i;
    }
    std::size_t j = 0;
    while (j < pools_.size() && !pools_[j]->runs_here()) {
        ++j;
    }
    IMAGEGATE_CHECK(j < pools_.size(), "an upstream fetch runs on one of its client's workers");
    return j;
}

std::optional<std::string> client::request_bytes(std::string_view target,
                                                 const credential* cred) const {
    // Exactly these headers: the upstream sees the same request whichever client asked,
    // nothing of the downstream request leaks through, and identity encoding keeps the body
    // parseable in place (no gzip to undo before validation).
    const std::string path = join_target(opts_.base_path, target);
    if (!is_target_safe(path)) {
        return std::nullopt;
    }
    const auto c = credential_fields(cred, token_field_);
    if (!c) {
        return std::nullopt;
    }
    const auto& f = *c;
    return get_request_head(path, {fixed_fields_, f[0], f[1], f[2], f[3], f[4]});
}

asio::awaitable<boost::system::result<response>> client::fetch(
    std::string target, clock::time_point deadline, std::shared_ptr<const credential> cred,
    connection_choice choice, attempt_facts* facts) {
    const auto req = request_bytes(target, cred.get());
    if (!req) {
        // The config check and gateway/auth/authorizer.cpp refuse such values first; never reached
        // with valid input, and never sent (a CR or LF would start a header of its own).
        if (log_) {
            log_->error(
                "upstream request not sent: the target or a credential holds control "
                "bytes");
        }
        co_return make_error_code(errc::internal_error);
    }
    // The pool of the worker this fetch runs on: the exchange below runs inline, on the
    // connection's own executor (connection::exchange checks it).
    const std::size_t worker = local_pool();
    upstream::pool& pool = *pools_[worker];
    const auto mode = choice == connection_choice::pooled ? acquire_mode::any : acquire_mode::fresh;
    auto acquired = co_await pool.acquire(deadline, mode);
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
    stats_->exchanges_by_worker[worker].fetch_add(1, std::memory_order_relaxed);
    const bool reused = l.is_reused();
    if (reused) {
        stats_->reuses.fetch_add(1, std::memory_order_relaxed);
    }
    connection& conn = l.conn();
    auto r = co_await conn.exchange(*req, deadline);
    if (r) {
        if (conn.is_reusable()) {
            l.mark_reusable();
        }
        stats_->count_status(r->status);
        stats_->interim_skipped.fetch_add(r->facts.interim_responses, std::memory_order_relaxed);
        stats_->latency.observe(r->latency);
        co_return std::move(*r);
    }
    const failure f = r.error();
    if (pool.is_shutting_down()) {
        co_return make_error_code(errc::shutting_down);  // our own abort, not the upstream's
    }
    if (f.ec == framing_error::unread_bytes_before_request) {
        stats_->unread_discards.fetch_add(1, std::memory_order_relaxed);
    }
    if (facts != nullptr) {
        facts->reused_connection = reused;
        facts->response_started = f.response_started;
    }
    const errc e = classify(f);
    stats_->count_error(e);
    // A reused connection that failed before any byte was most likely closed by the upstream
    // while idle: routine, and the caller retries it on a new connection.
    const bool routine = reused && !f.response_started && e != errc::upstream_timeout;
    if (log_ && (!routine || log_->should_log(spdlog::level::debug))) {
        log_->log(routine ? spdlog::level::debug : spdlog::level::warn,
                  "upstream fetch failed: target={} error={} phase={} category={} value={} "
                  "message={} reused={}",
                  target, make_error_code(e).message(), to_string(f.phase), f.ec.category().name(),
                  f.ec.value(), f.ec.message(), reused);
    }
    co_return make_error_code(e);
}

namespace {

// Keeps the client body's own error apart from the upstream's failures.
class recording_body final : public forward_body {
public:
    explicit recording_body(forward_body& inner) : inner_(inner) {}
    asio::awaitable<boost::system::result<std::span<const char>>> next() override {
        auto got = co_await inner_.next();
        if (!got) {
            error_ = got.error();
        }
        co_return got;
    }
    boost::system::error_code error() const noexcept { return error_; }

private:
    forward_body& inner_;
    boost::system::error_code error_;
};

}  // namespace

asio::awaitable<boost::system::result<forward_outcome>> client::forward(
    forward_request req, forward_body* body, forward_sink* sink, clock::time_point deadline,
    std::shared_ptr<const credential> cred) {
    const std::string path = join_target(opts_.base_path, req.target);
    const auto cred_fields = credential_fields(cred.get(), token_field_);
    // The header lines were built from header-safe values (forward_request_headers).
    if (!is_target_safe(path) || !cred_fields) {
        if (log_) {
            log_->error(
                "forwarded request not sent: the target or a credential holds control "
                "bytes");
        }
        co_return make_error_code(errc::internal_error);
    }
    std::string cred_lines;
    for (const auto piece : *cred_fields) {
        cred_lines.append(piece);
    }
    const std::string head = forward_request_head(req, path, forward_fields_, cred_lines);
    const std::size_t worker = local_pool();
    upstream::pool& pool = *pools_[worker];
    const bool safe_method = req.method == http::verb::get || req.method == http::verb::head;
    auto acquired =
        co_await pool.acquire(deadline, safe_method ? acquire_mode::any : acquire_mode::fresh);
    if (!acquired) {
        co_return acquired.error();
    }
    lease l = std::move(*acquired);
    stats_->exchanges_by_worker[worker].fetch_add(1, std::memory_order_relaxed);
    if (l.is_reused()) {
        stats_->reuses.fetch_add(1, std::memory_order_relaxed);
    }
    std::optional<recording_body> recorder;
    if (req.has_body && body != nullptr) {
        recorder.emplace(*body);
    }
    connection& conn = l.conn();
    auto r = co_await conn.forward(head, recorder ? &*recorder : nullptr,
                                   req.has_body && !req.content_length,
                                   req.method == http::verb::head, *sink, deadline);
    if (r) {
        if (conn.is_reusable()) {
            l.mark_reusable();
        }
        stats_->count_status(r->status);
        stats_->latency.observe(r->latency);
        co_return std::move(*r);
    }
    if (recorder && recorder->error()) {
        co_return recorder->error();
    }
    const failure f = r.error();
    if (pool.is_shutting_down()) {
        co_return make_error_code(errc::shutting_down);
    }
    const errc e = classify(f);
    stats_->count_error(e);
    if (log_) {
        log_->warn(
            "upstream forward failed: method={} error={} phase={} category={} value={} "
            "message={}",
            std::string_view(http::to_string(req.method)), make_error_code(e).message(),
            to_string(f.phase), f.ec.category().name(), f.ec.value(), f.ec.message());
    }
    co_return make_error_code(e);
}

}  // namespace imagegate::upstream
