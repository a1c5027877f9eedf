// The image-details route: validates the request, answers fresh entries from the cache
// without touching JSON, and fetches misses once per key (single-flight) over the upstream
// client, storing only validated records.
#pragma once

#include "gateway/core/time_source.hpp"
#include "gateway/http/server.hpp"

#include <atomic>
#include <chrono>
#include <memory>

namespace spdlog {
class logger;
}

namespace imagegate::cache {
class sharded_cache;
}

namespace imagegate::upstream {
class client;
}

namespace imagegate::admission {
class gate;
}

namespace imagegate::fleet {
class l2_cache;
}

namespace imagegate::gateway {

class authorizer;

/// Freshness and timing policy, mapped from config by the composition root.
struct image_policy {
    std::chrono::milliseconds ttl{std::chrono::minutes(5)};
    std::chrono::milliseconds draft_ttl{std::chrono::seconds(10)};
    std::chrono::milliseconds negative_ttl{std::chrono::seconds(30)};
    std::chrono::milliseconds stale_while_revalidate{std::chrono::seconds(60)};
    std::chrono::milliseconds stale_if_error{std::chrono::hours(24)};
    /// Deadline of the upstream exchange of one fetch (acquire + connect + write + read, the
    /// retry included): a slow upstream is answered 504 (99504) when it passes.
    std::chrono::milliseconds request_timeout{std::chrono::seconds(15)};
    /// The longest a miss waits for its budget slot; a slot further away is refused at once
    /// with 429 and a truthful Retry-After (shield.max_queue_wait).
    std::chrono::milliseconds max_queue_wait{std::chrono::seconds(5)};
    /// How long a request waits for the fetch of its key: at least max_queue_wait +
    /// request_timeout (config::check), so the fetch always ends first with its own answer.
    std::chrono::milliseconds coalesce_timeout{std::chrono::seconds(25)};
    /// Let a client's `Cache-Control: no-cache` force a fetch (still single-flight and
    /// budgeted); ignored by default so one client cannot bypass the shield.
    bool honor_client_no_cache = false;
    /// auth.mode = "passthrough": each caller's own credential goes upstream, cached entries
    /// are answered only to credentials with a proof, and the shield is kept per credential.
    bool passthrough = false;
    /// passthrough: how long an upstream acceptance of (credential, account) is remembered.
    std::chrono::milliseconds proof_ttl{std::chrono::minutes(5)};
    /// passthrough: credentials remembered with proofs (the least recently used goes first).
    std::size_t max_proven_credentials = 10000;
    /// Failed fetches remembered for a second (a burst of SDK retries costs one call).
    std::size_t max_remembered_failures = 4096;
    /// The clock of freshness, stale windows, proofs and remembered failures (tests move
    /// it by hand; gateway/core/time_source.hpp). Deadlines of waits stay on the steady clock.
    const time_source* time = &time_source::real();
};

/// Counters of the image route, keyed like Cache-Status (relaxed atomics).
struct image_stats {
    std::atomic<std::uint64_t> hits{0};               ///< fresh answers from the cache
    std::atomic<std::uint64_t> misses{0};             ///< no usable entry: fetched
    std::atomic<std::uint64_t> stale_refetches{0};    ///< entry past its freshness: fetched
    std::atomic<std::uint64_t> stored{0};             ///< validated answers stored
    std::atomic<std::uint64_t> collapsed{0};          ///< requests that joined another's fetch
    std::atomic<std::uint64_t> invalid{0};            ///< upstream answers that failed validation
    std::atomic<std::uint64_t> passthrough{0};        ///< upstream 4xx answered, not stored
    std::atomic<std::uint64_t> coalesce_timeouts{0};  ///< waited coalesce_timeout in vain
    std::atomic<std::uint64_t> upstream_errors{0};    ///< fetches that ended in a gateway error
    std::atomic<std::uint64_t> negative_hits{0};      ///< fresh "not found" answers from the cache
    std::atomic<std::uint64_t> stale_swr{0};          ///< stale answers while revalidating
    std::atomic<std::uint64_t> stale_error{0};        ///< stale answers because a fetch failed
    std::atomic<std::uint64_t> fleet_refreshes_from_l2{0};  ///< refreshes another instance did
    std::atomic<std::uint64_t> budget_refused{0};           ///< fetches refused: no budget in time
    std::atomic<std::uint64_t> paused_refused{0};           ///< fetches refused: upstream 429 pause
    std::atomic<std::uint64_t> retries{0};                  ///< second attempts (shield/retry.hpp)
    std::atomic<std::uint64_t> retry_refused{0};            ///< retries the budget had no slot for
    std::atomic<std::uint64_t> abandoned{0};                ///< queued fetches every client left
    std::atomic<std::uint64_t> satisfied_elsewhere{0};      ///< queued fetches found cached after
    std::atomic<std::uint64_t> remembered_failures{0};    ///< answered from a failed fetch <1 s old
    std::atomic<std::uint64_t> clients_gone{0};           ///< clients that hung up while waiting
    std::atomic<std::uint64_t> unauthorized{0};           ///< refused: no or unknown client key
    std::atomic<std::uint64_t> forbidden{0};              ///< refused: key may not read the account
    std::atomic<std::uint64_t> malformed_credentials{0};  ///< passthrough: refused, 400
    std::atomic<std::uint64_t> proof_hits{0};             ///< passthrough: cached entry, proof held
    std::atomic<std::uint64_t> proof_misses{0};           ///< passthrough: cached entry, no proof
    std::atomic<std::uint64_t> proof_rejections{0};       ///< passthrough: upstream 401/403
    std::atomic<std::uint64_t> uncertain_served{0};       ///< answers served unstored (not clean)
    std::atomic<std::uint64_t> uncertain_refused{0};      ///< unclean answers on reused connections
};

/// Owned by the composition root; references services that outlive it. Thread-safe.
class image_handler {
public:
    /// Requests must be handled on the I/O workers `client` was built for: a miss's fetch
    /// runs on the worker of the session that starts it. Every upstream call asks `gate` for
    /// its slot (admission/gate.hpp).
    image_handler(cache::sharded_cache& cache, upstream::client& client, const authorizer& auth,
                  image_policy policy, std::shared_ptr<spdlog::logger> log,
                  std::shared_ptr<admission::gate> gate);
    ~image_handler();
    image_handler(const image_handler&) = delete;
    image_handler& operator=(const image_handler&) = delete;

    /// A fresh hit or a refusal is answered at once; anything else returns the coroutine
    /// that waits for the fetch.
    handler_result handle(request req);
    /// What handle() answers a request it refuses before any lookup (route_not_found,
    /// method_not_allowed): the data listener's router answers its 404/405 with it.
    static reply refusal(errc e);

    /// Before the first request: the fleet's shared cache, looked up on an L1 miss before the
    /// upstream and written after a validated answer (gateway/fleet/l2_cache.hpp).
    void attach_fleet(std::shared_ptr<fleet::l2_cache> l2);
    /// A reload: answers stored from now on use `p`'s ttl, draft_ttl, negative_ttl,
    /// stale_while_revalidate and stale_if_error (entries already cached keep theirs); the
    /// other fields of `p` are ignored. Any thread.
    void set_freshness(const image_policy& p);

    const image_stats& stats() const noexcept;
    /// Appends the route's counters in Prometheus text.
    void render_metrics(std::string& out) const;

    struct impl;

private:
    friend class write_effects;  // gateway/image/writes.hpp: shares the cache policy and proofs
    std::shared_ptr<impl> impl_;
};

}  // namespace imagegate::gateway
