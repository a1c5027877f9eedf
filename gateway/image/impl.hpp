// The image route's shared state and vocabulary: what a flight is for, what a fetch produced,
// and the handler's services. Internal to gateway/image (handler.cpp, fetch.cpp, metrics.cpp).
#pragma once

#include "cache/entry.hpp"
#include "cache/key.hpp"
#include "cache/single_flight.hpp"
#include "gateway/admission/gate.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/auth/authorizer.hpp"
#include "gateway/image/handler.hpp"
#include "gateway/image/route.hpp"
#include "gateway/shield/failure_memo.hpp"
#include "gateway/shield/time.hpp"
#include "gateway/upstream/credential.hpp"

#include <memory>
#include <string_view>

namespace imagegate::upstream {
struct response;
}

namespace imagegate::fleet {
class l2_cache;
}

namespace imagegate::gateway {

using clock = std::chrono::steady_clock;
using entry_ptr = std::shared_ptr<const cache::entry>;

/// What a flight is for: a cache key and, in passthrough mode, the digest of the credential
/// that fetches it (all zero in token mode). Requests share a flight only with requests of
/// the same credential, so an answer the upstream gave one credential never reaches another.
struct flight_key {
    cache::key k;
    credential_digest cred{};

    friend bool operator==(const flight_key&, const flight_key&) = default;
};

struct flight_key_hash {
    std::size_t operator()(const flight_key& f) const noexcept {
        return cache::key_hash{}(f.k) ^ (digest_hash{}(f.cred) * 0x9e3779b97f4a7c15ULL);
    }
};

/// What one upstream fetch produced; shared by every request that waited for it.
struct fetch_outcome {
    /// A servable answer: a validated record or "not found" (stored unless `stored` is false),
    /// or an upstream 4xx passed through (never stored).
    entry_ptr entry;
    bool stored = false;
    unsigned upstream_status = 0;
    /// Set when there is no servable answer.
    errc error{};
    /// Refusals (429) and remembered failures: when the client should come back.
    std::optional<shield::retry_advice> retry;
    /// budget_exhausted / upstream_rate_limited: why the shield refused (access log, metrics).
    admission::refusal refused = admission::refusal::none;
    /// `entry` was found fresh in the cache after the slot wait: no upstream call was made.
    bool from_cache = false;
    /// `entry` came from the fleet's shared cache (L2): no upstream call was made.
    bool from_l2 = false;
};

/// A failed fetch remembered for a second (shield/failure_memo.hpp).
struct failed_fetch {
    errc error{};
};

// Cache-Status values for the access log (RFC 9211 parameters, abbreviated).
inline constexpr std::string_view cs_hit = "hit";
inline constexpr std::string_view cs_stored = "fwd=miss; stored";
inline constexpr std::string_view cs_forwarded = "fwd=miss";
inline constexpr std::string_view cs_stale = "fwd=stale";
inline constexpr std::string_view cs_collapsed = "collapsed";
inline constexpr std::string_view cs_l2_hit = "fwd=miss; detail=l2-hit";
inline constexpr std::string_view cs_error = "error";

struct image_handler::impl : std::enable_shared_from_this<impl> {
    cache::sharded_cache& cache;
    upstream::client& client;
    const authorizer& auth;
    image_policy policy;
    // The freshness windows (ttl, draft/negative ttl, stale windows) classify() stores
    // answers with: a snapshot a reload replaces whole (set_freshness).
    snapshot<image_policy> freshness;
    std::shared_ptr<spdlog::logger> log;
    /// Every upstream call asks it for a slot (token mode: one credential; passthrough: per
    /// caller credential plus the unproven budget). Local or fleet-wide, the fetch cannot tell.
    std::shared_ptr<admission::gate> gate;
    image_stats stats;
    cache::single_flight<flight_key, fetch_outcome, flight_key_hash> flights;
    proof_cache proofs;
    /// The fleet's shared cache (Redis), or null without `[redis]` (attach_fleet).
    std::shared_ptr<fleet::l2_cache> l2;
    /// Failed fetches by flight for a second: a burst of SDK retries costs one upstream call.
    shield::failure_memo<flight_key, failed_fetch, flight_key_hash> failures;

    impl(cache::sharded_cache& c, upstream::client& cl, const authorizer& a, image_policy p,
         std::shared_ptr<spdlog::logger> l, std::shared_ptr<admission::gate> g);

    /// `cred` is the passthrough credential's digest (null in token mode): what the upstream
    /// answered it is remembered as a proof or drops one. `generation` is the key's cache
    /// generation from before the fetch: a purge since then keeps the answer from being
    /// stored (the waiters still get it). How certainly the answer is this request's
    /// (`resp.facts`) decides what it may do: certain — stored and proof; clean on a reused
    /// connection — stored, no proof; not clean on a fresh one — served only; not clean on
    /// a reused one — refused (502), it may be another request's answer.
    fetch_outcome classify(const cache::key& k, const image_route& route, upstream::response& resp,
                           clock::time_point received, const credential_digest* cred,
                           std::uint64_t generation);
};

/// What the first upstream call of a fetch asks the gate for (the key's slot, the queue cap,
/// the credential and whether it holds a proof).
admission::call first_attempt_call(image_handler::impl& s, const flight_key& fk,
                                   shield::priority prio, bool passthrough, clock::time_point now);

/// The answer for a refused first call (429: budget or pause), counted.
fetch_outcome refusal_outcome(image_handler::impl& s, const admission::ticket& t);

/// The fetch of one key as its own task (fetch.cpp): owned by the flight, not by any client.
/// `first` is the granted slot of its first upstream call; `ex` is the starting session's
/// worker, where the fetch runs.
void start_fetch(asio::any_io_executor ex, std::shared_ptr<image_handler::impl> self, flight_key fk,
                 image_route route, shield::priority prio,
                 std::shared_ptr<const upstream::credential> cred,
                 std::shared_ptr<cache::flight<fetch_outcome>> f, admission::ticket first);

/// The first call's ticket `t` decided (fetch.cpp): granted, starts the fetch; refused, gives
/// the fleet's fill lease back and answers the flight with the refusal.
void start_or_refuse(asio::any_io_executor ex, std::shared_ptr<image_handler::impl> self,
                     flight_key fk, image_route route, shield::priority prio,
                     std::shared_ptr<const upstream::credential> cred,
                     std::shared_ptr<cache::flight<fetch_outcome>> f, admission::ticket t);

/// What a flight answers with an entry from the fleet's L2 (`stored`: put in L1).
fetch_outcome l2_outcome(std::shared_ptr<const cache::entry> e, bool stored);

/// A background refresh with the fleet tier on, as its own task (fetch.cpp): first L2, for a
/// value another instance refreshed already (taking the key's fill lease, or waiting for the
/// instance that holds it), then, if there is none, the upstream through the gate at
/// background priority. The client that triggered it has its stale answer already: neither
/// the L2 lookup nor the lease wait delays it.
void start_fleet_refresh(asio::any_io_executor ex, std::shared_ptr<image_handler::impl> self,
                         flight_key fk, image_route route,
                         std::shared_ptr<const upstream::credential> cred,
                         std::shared_ptr<cache::flight<fetch_outcome>> f);

/// The access-log / Cache-Status detail of a gateway error: the errc's name, or for a
/// refusal the reason too ("budget_exhausted; reason=queue_full"). Static storage.
std::string_view error_detail(errc e, admission::refusal why) noexcept;

}  // namespace imagegate::gateway
