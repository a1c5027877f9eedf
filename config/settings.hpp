// The gateway's settings: one aggregate tree with documented defaults. Filled by
// config::load (defaults < TOML < environment < flags); a reload builds a new tree.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace imagegate::config {

/// All durations are kept in milliseconds; the TOML/env/CLI layers accept "1500ms", "5s",
/// "5m", "24h".
using duration = std::chrono::milliseconds;

inline constexpr std::uint64_t kib = 1024;
inline constexpr std::uint64_t mib = 1024 * kib;

/// `[server]`: the data-plane listener and its per-connection limits.
struct server_settings {
    /// HOST:PORT the image API is served on. Port 0 picks a free port (tests).
    std::string listen = "127.0.0.1:8080";
    /// HOST:PORT of the admin listener (/healthz, /readyz, /metrics, cache purge).
    std::string admin_listen = "127.0.0.1:9090";
    /// I/O threads; 0 means one per core (std::thread::hardware_concurrency()).
    std::uint32_t threads = 0;
    /// Deadline for a client to send a complete request head once it started one.
    duration header_timeout = std::chrono::seconds(10);
    /// How long a keep-alive connection may sit idle between requests.
    duration idle_timeout = std::chrono::seconds(60);
    /// Deadline for writing one response to a client.
    duration write_timeout = std::chrono::seconds(10);
    /// On SIGTERM/SIGINT: how long in-flight requests may take before the process exits.
    duration drain_timeout = std::chrono::seconds(10);
    /// Concurrent client connections on the data listener; more are accepted and closed.
    std::uint64_t max_connections = 10000;
    /// Request line + headers, in bytes; larger requests get 431.
    std::uint64_t max_header_bytes = 16 * kib;
    /// PEM certificate chain for TLS on the data listener; empty serves plain HTTP.
    std::string tls_cert;
    /// PEM private key of `tls_cert` (mode 600); required with `tls_cert`.
    std::string tls_key;

    friend bool operator==(const server_settings&, const server_settings&) = default;
};

/// `[upstream]`: where misses are fetched and how.
struct upstream_settings {
    /// Base URL that `/accounts/...` is appended to.
    std::string url = "https://api.cloudflare.com/client/v4";
    /// PEM bundle of trusted CAs; empty means the system store.
    std::string ca_file;
    /// File holding the API token (first line); env CLOUDFLARE_API_TOKEN wins when set.
    std::string token_file;
    /// Deadline for resolve + TCP connect + TLS handshake.
    duration connect_timeout = std::chrono::seconds(5);
    /// Deadline for the upstream exchange of one fetch (connect, write the request, read the
    /// full response; the one retry included). Passed: 504 (99504).
    duration request_timeout = std::chrono::seconds(15);
    /// Open connections to the upstream at most (in use + idle).
    std::uint64_t max_connections = 64;
    /// Largest response body accepted from the upstream, in bytes.
    std::uint64_t max_body_bytes = 1 * mib;
    /// An idle pooled connection is closed after this long.
    duration pool_idle_timeout = std::chrono::seconds(30);
    /// A connection is retired after serving this many requests.
    std::uint64_t max_requests_per_connection = 1000;
    /// How long a request may wait for a pooled connection.
    duration acquire_timeout = std::chrono::seconds(5);
    /// Allow an `http://` upstream (no TLS). Only for local emulators.
    bool allow_plaintext = false;

    friend bool operator==(const upstream_settings&, const upstream_settings&) = default;
};

/// `[cache]`: the in-memory LRU and its freshness windows (RFC 5861 semantics).
struct cache_settings {
    /// Accounted bytes of all entries together never exceed this.
    std::uint64_t max_bytes = 256 * mib;
    /// Entries at most; 0 means bounded only by bytes.
    std::uint64_t max_entries = 0;
    /// An entry larger than this is answered but not stored.
    std::uint64_t max_entry_bytes = 1 * mib;
    /// Number of shards (power of two), each with its own lock.
    std::uint32_t shards = 16;
    /// How long a stored image record is fresh.
    duration ttl = std::chrono::minutes(5);
    /// Freshness of a record with "draft": true (capped by ttl).
    duration draft_ttl = std::chrono::seconds(10);
    /// Freshness of a stored "image not found" (404, code 5404).
    duration negative_ttl = std::chrono::seconds(30);
    /// After expiry, a stale entry is answered at once while one refresh runs.
    duration stale_while_revalidate = std::chrono::seconds(60);
    /// After expiry, a stale entry is answered when the refresh fails.
    duration stale_if_error = std::chrono::hours(24);

    friend bool operator==(const cache_settings&, const cache_settings&) = default;
};

/// `[shield]`: protects the upstream token's rate limit.
struct shield_settings {
    /// Upstream requests allowed per window (Cloudflare allows 1200 per 5 minutes).
    std::uint64_t budget = 1000;
    /// The window `budget` is spread over.
    duration window = std::chrono::minutes(5);
    /// Token bucket capacity: requests that may go out back to back.
    std::uint64_t burst = 50;
    /// The longest a miss waits in line for its budget slot; when the next free slot is
    /// further away the request is refused at once with 429 and a truthful Retry-After.
    /// At least 1 s; max_queue_wait + upstream.request_timeout <= coalesce_timeout.
    duration max_queue_wait = std::chrono::seconds(5);
    /// How long a request waits for the fetch of its key (its own or another request's):
    /// the safety net behind max_queue_wait + upstream.request_timeout (+ fleet.lease_timeout
    /// with Redis), which bound the fetch. 25 s: the defaults' sum with the fleet tier on, so
    /// turning Redis on needs no other change.
    duration coalesce_timeout = std::chrono::seconds(25);
    /// Let a client's `Cache-Control: no-cache` force a refetch.
    bool honor_client_no_cache = false;
    /// Passthrough: upstream requests per window made with credentials the upstream has not
    /// accepted lately, all callers together. Made-up credentials cost calls (answered 401)
    /// that count against Cloudflare's per-IP limit of the gateway's address.
    std::uint64_t unproven_budget = 600;
    /// Passthrough: caller credentials with their own budget and pause at once. A credential
    /// whose pause runs or whose bucket is not full is never forgotten; when all must be
    /// kept, new credentials get 429 (those without a proof already at 75 % of this).
    std::uint64_t max_credentials = 4096;

    friend bool operator==(const shield_settings&, const shield_settings&) = default;
};

/// `[log]`
struct log_settings {
    /// trace, debug, info, warn, error, critical, off.
    std::string level = "info";
    /// "text" or "json".
    std::string format = "text";
    /// One line per request at info level: every miss, error and refusal, and 1 in
    /// `access_log_hit_sample` fresh cache hits. Written by a thread of its own through a
    /// bounded queue (a full queue drops the line and counts it; a request never waits).
    bool access_log = true;
    /// Log 1 in N fresh cache hits (1 = every hit). Sampled-out hits are counted in
    /// imagegate_access_log_hits_sampled_out_total.
    std::uint64_t access_log_hit_sample = 100;

    friend bool operator==(const log_settings&, const log_settings&) = default;
};

/// One `[[auth.client_keys]]` entry: a caller's key, known only by its hash.
struct client_key {
    /// Lower-case hex SHA-256 of the key (64 characters); the key itself is never stored.
    std::string sha256;
    /// Account ids (32 lowercase hex) the key may read, or "*" for every account.
    std::vector<std::string> accounts;
    /// Methods (GET HEAD POST PUT PATCH DELETE) the key may forward upstream with the
    /// gateway's token; empty: the key only reads image details. (The `= {}` keeps
    /// `{sha256, accounts}` initializers free of -Wmissing-field-initializers.)
    std::vector<std::string> forward = {};
    /// Paths after /client/v4 that `forward` is limited to ("/accounts/<id>/images/"); empty:
    /// every path of the key's accounts (`/accounts/<id>/...`, any path with "*").
    std::vector<std::string> forward_prefixes = {};

    friend bool operator==(const client_key&, const client_key&) = default;
};

/// `[auth]`: who may read what through the gateway.
struct auth_settings {
    /// "token": imagegate holds the upstream token; callers present client keys (or none).
    /// "passthrough": each caller's own credential is used upstream, and a cached entry of an
    /// account is answered only to credentials the upstream accepted for that account.
    std::string mode = "token";
    /// passthrough: how long an upstream acceptance of (credential, account) is remembered.
    duration proof_ttl = std::chrono::minutes(5);
    /// A TOML file of `[[client_keys]]` entries (mode 600), added to `client_keys`.
    std::string keys_file;
    /// Serve callers without a client key on a non-loopback listener.
    bool allow_anonymous = false;
    /// `[[auth.client_keys]]` entries (TOML only; not settable by env or flags).
    std::vector<client_key> client_keys;

    friend bool operator==(const auth_settings&, const auth_settings&) = default;
};

/// `[forward]`: requests under /client/v4 that are not image-detail reads, passed upstream.
struct forward_settings {
    /// Largest request body forwarded (an image upload is multipart up to 10 MB); 413 over it.
    std::uint64_t max_body_bytes = 10 * mib + 64 * kib;
    /// The longest a request body may take to arrive once its head is read.
    duration body_timeout = std::chrono::seconds(60);
    /// auth.mode = "token": methods a caller without a client key may forward when it
    /// connects from a loopback address (never granted to other peers). Empty: none.
    std::vector<std::string> anonymous_methods;

    friend bool operator==(const forward_settings&, const forward_settings&) = default;
};

/// `[admin]`: the admin listener's own protection.
struct admin_settings {
    /// File whose first line is the bearer token purge requests must present (mode 600);
    /// without it, purge is refused.
    std::string token_file;

    friend bool operator==(const admin_settings&, const admin_settings&) = default;
};

/// `[redis]`: the fleet tier's Redis server (gateway/fleet). Without `url` nothing of the
/// fleet tier runs and the gateway behaves as a single instance.
struct redis_settings {
    /// `redis://[user@]host[:port][/db]` or `rediss://…` (TLS); empty: no fleet tier. A
    /// password in the URL is refused: it goes in `password_file`.
    std::string url;
    /// File whose first line is the Redis password (mode 600); empty: no AUTH.
    std::string password_file;
    /// ACL user (`AUTH user password`); overrides a user named in the URL.
    std::string username;
    /// Resolve + TCP connect + TLS handshake + AUTH, together.
    duration connect_timeout = std::chrono::milliseconds(500);
    /// Deadline of every Redis operation on the request path; a slower Redis counts as a miss.
    duration op_timeout = std::chrono::milliseconds(100);
    /// Prefix of every key and of the events channel (`<prefix>:v1:{account:id}`).
    std::string key_prefix = "imagegate";
    /// rediss://: PEM bundle of the CAs trusted for the server; empty: the system store.
    std::string ca_file;
    /// rediss://: name checked against the server certificate (and SNI); empty: the host.
    std::string tls_server_name;
    friend bool operator==(const redis_settings&, const redis_settings&) = default;
};

/// `[fleet]`: how the instances sharing one Redis cooperate.
struct fleet_settings {
    /// Instances sharing the upstream budget: with Redis down each falls back to 1/N of it.
    std::uint64_t instances = 1;
    /// The cross-instance fill lease: the longest other instances wait for one instance's
    /// upstream fetch of a key before fetching it themselves.
    duration lease_timeout = std::chrono::seconds(5);
    friend bool operator==(const fleet_settings&, const fleet_settings&) = default;
};

/// `[warm]`: cache warming jobs (POST /cache/warm).
struct warm_settings {
    /// File the jobs (account, position, page size, counters) are written to after every
    /// stored page, and read back at start-up so a POST resumes them; written atomically,
    /// mode 0600, in a directory that must exist. Per instance, never shared. Empty: jobs are
    /// kept in memory only.
    std::string state_file;
    friend bool operator==(const warm_settings&, const warm_settings&) = default;
};

/// Values that must never be printed. Filled from the environment or files, never flags.
struct secrets {
    /// Bearer token sent upstream; empty means none.
    std::string upstream_token;
    /// Bearer token for state-changing admin routes; empty disables them.
    std::string admin_token;

    friend bool operator==(const secrets&, const secrets&) = default;
};

/// The whole configuration. Each member is the TOML table (and IMAGEGATE_<SECTION>_ prefix)
/// of the same name, except `secret`, which no file, variable or flag names directly.
struct settings {
    /// `[server]`: data-plane and admin listeners.
    server_settings server;
    /// `[upstream]`: the Cloudflare API (or an emulator) and the connection pool.
    upstream_settings upstream;
    /// `[cache]`: sizes and freshness windows.
    cache_settings cache;
    /// `[shield]`: the upstream request budget.
    shield_settings shield;
    /// `[log]`: level, format, access log.
    log_settings log;
    /// `[auth]`: client keys and who may read which account.
    auth_settings auth;
    /// `[forward]`: what is passed upstream uncached, and to whom.
    forward_settings forward;
    /// `[admin]`: the admin token that state-changing admin routes require.
    admin_settings admin;
    /// `[redis]`: the fleet tier's Redis (optional).
    redis_settings redis;
    /// `[fleet]`: instances and the fill lease.
    fleet_settings fleet;
    /// `[warm]`: where warm jobs are kept across restarts.
    warm_settings warm;
    /// The upstream and admin tokens; see config/load.hpp for where they come from.
    secrets secret;

    friend bool operator==(const settings&, const settings&) = default;
};

/// One `section.key = value` line per setting, each ending in '\n', for the start-up log.
/// Values are TOML (the lines read back with config::apply_toml) except the last line,
/// `upstream.token = <set>` or `<unset>`: the token itself is never printed.
std::string describe(const settings& s);

/// The settings as a TOML document (`[section]` tables, every key, in settings.hpp order)
/// that apply_toml() reads back to the same keys. The tokens are never printed: comments say
/// `<set>` or `<unset>`, and client keys are counted, not listed. For --print-config.
std::string to_toml(const settings& s);

/// Key paths whose values differ between `a` and `b`, in key-table order, followed by
/// "auth.client_keys", "upstream.token" and "admin.token" when those differ.
std::vector<std::string> changed_keys(const settings& a, const settings& b);

}  // namespace imagegate::config
