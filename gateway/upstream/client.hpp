// The upstream client the gateway calls on a cache miss: builds the one GET the Images API
// needs, runs it once on a pooled connection, and maps failures to errc (retrying is the
// caller's decision: shield/retry.hpp).
#pragma once

#include "gateway/core/net.hpp"
#include "gateway/upstream/connection.hpp"
#include "gateway/upstream/credential.hpp"
#include "gateway/upstream/pool.hpp"
#include "gateway/upstream/stats.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/result.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::upstream {

/// Everything the client needs, mapped by the composition root from config::settings
/// (upstream_settings + the parsed upstream URL + secrets). Plain fields, no config types.
struct client_options {
    /// Upstream host name or address (from the URL).
    std::string host = "api.cloudflare.com";
    /// Upstream TCP port (from the URL).
    std::uint16_t port = 443;
    /// https (true) or http (false) from the URL scheme.
    bool tls = true;
    /// Must be true for `tls == false` (config upstream.allow_plaintext).
    bool allow_plaintext = false;
    /// Path prefix before `/accounts/...`, e.g. "/client/v4" (from the URL).
    std::string base_path = "/client/v4";
    /// Name for SNI and certificate verification; empty means `host`. Tests set it to
    /// check host-name verification while connecting to 127.0.0.1.
    std::string server_name;
    /// Bearer token; empty sends no Authorization header. Never logged.
    std::string token;
    /// Response head limit in bytes.
    std::uint32_t max_header_bytes = 16 * 1024;
    /// Response body limit in bytes (config upstream.max_body_bytes).
    std::uint64_t max_body_bytes = 1024 * 1024;
    /// Pool limits and the connect timeout.
    pool_options pool;
};

/// Which connection fetch() sends its request on.
enum class connection_choice {
    pooled,  ///< an idle pooled connection if there is one, else a new one
    /// Always a new connection: its answer's exchange_facts::fresh_connection holds, so a
    /// clean answer is certain() (what a passthrough proof must rest on), and a retry after a
    /// reused connection failed cannot meet the same fate.
    fresh,
};

/// What the caller's retry rule needs to know about an attempt that failed.
struct attempt_facts {
    /// The attempt ran on a connection that had served an exchange before.
    bool reused_connection = false;
    /// At least one response byte had arrived: the upstream may have processed the request.
    bool response_started = false;
};

/// One client per upstream origin, owned by main and shared by reference with handlers.
/// It runs one connection pool per I/O worker, so a fetch runs where its caller runs: on
/// the worker of the session that missed, with that worker's connections. The pools share
/// the origin's connection limit (connection_limit) and the TLS session cache.
/// Must be destroyed before the workers' contexts.
/// Thread-safety: fetch() may run concurrently from any number of coroutines on the
/// workers given to the constructor (anywhere else it aborts: IMAGEGATE_CHECK);
/// shutdown() from any thread.
class client {
public:
    /// `executors`: one per I/O worker (gateway/core/workers.hpp), at least one.
    /// Throws std::invalid_argument for unusable options (empty host, zero
    /// max_connections, plaintext without allow_plaintext, TLS without a context): these are
    /// start-up errors. `tls_ctx` is ignored for plaintext and may then be null.
    client(std::vector<asio::any_io_executor> executors, client_options opts,
           std::shared_ptr<asio::ssl::context> tls_ctx, std::shared_ptr<spdlog::logger> log = {});
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    ~client();

    /// GET base_path + `target` by `deadline`, exactly one attempt (never retried here: the
    /// gateway's one retry layer is the caller's, shield/retry.hpp). `target` is the
    /// already-encoded path after the base path, starting with `/`. Any HTTP status is a
    /// value (the caller classifies it); errors are errc values: upstream_connect_failed,
    /// upstream_tls_failed, upstream_timeout, upstream_too_large, upstream_protocol_error,
    /// pool_exhausted, shutting_down, and `facts` (when given) says what the retry rule needs.
    /// With `cred`, exactly that credential is sent and the configured token never is.
    /// `response::facts` says how certainly the answer is this request's (exchange_facts);
    /// `choice` fresh makes it certain whenever it is clean.
    asio::awaitable<boost::system::result<response>> fetch(
        std::string target, clock::time_point deadline,
        std::shared_ptr<const credential> cred = nullptr,
        connection_choice choice = connection_choice::pooled, attempt_facts* facts = nullptr);

    /// A forwarded call (forward.hpp): `req` with the configured token, or exactly `cred`
    /// when given; its body pulled from `body` (null: none) and written as it comes; the
    /// answer handed to `sink` as it comes; all by `deadline`. Exactly one attempt, never
    /// retried, never shared. GET and HEAD may use a pooled connection; every other method
    /// goes on a new one, so a write never meets a connection the upstream closed while idle
    /// (and cannot have been half-received on one). Errors before the answer's head reached
    /// the sink are errc values as for fetch(), except an error of `body`, which is returned
    /// unchanged; after that, the outcome says whether the body was complete.
    /// `body` and `sink` must outlive the call.
    asio::awaitable<boost::system::result<forward_outcome>> forward(
        forward_request req, forward_body* body, forward_sink* sink, clock::time_point deadline,
        std::shared_ptr<const credential> cred = nullptr);

    /// Stops the pools: waiters and later fetches fail with errc::shutting_down.
    void shutdown();

    const upstream::stats& stats() const noexcept { return *stats_; }

    /// Connections counted against max_connections now (connecting, idle, in use, closing),
    /// over every worker's pool.
    std::size_t open_connections() const noexcept { return limit_->taken(); }

private:
    /// The request head for `target`, or nothing if a piece is not header-safe.
    std::optional<std::string> request_bytes(std::string_view target, const credential* cred) const;
    /// The pool of the calling worker, and its index.
    std::size_t local_pool() const noexcept;

    client_options opts_;
    std::shared_ptr<upstream::stats> stats_;
    std::shared_ptr<spdlog::logger> log_;
    // Prepared once: Host, Accept, Accept-Encoding and User-Agent lines; the configured
    // token's Authorization line (empty without a token). Never logged.
    std::string fixed_fields_;
    std::string token_field_;
    // A forwarded call's fixed lines: Host, Accept-Encoding and User-Agent (its Accept is the
    // client's).
    std::string forward_fields_;
    std::shared_ptr<connection_limit> limit_;             // shared by the pools
    std::vector<std::unique_ptr<upstream::pool>> pools_;  // one per worker, in worker order
};

}  // namespace imagegate::upstream
