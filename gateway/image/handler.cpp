#include "gateway/image/handler.hpp"

#include "cache/entry.hpp"
#include "cache/key.hpp"
#include "cache/sharded_cache.hpp"
#include "cache/single_flight.hpp"
#include "gateway/auth/authorizer.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/log_escape.hpp"
#include "gateway/core/snapshot.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/metrics/registry.hpp"
#include "gateway/image/route.hpp"
#include "gateway/shield/budget.hpp"
#include "gateway/shield/credential_shields.hpp"
#include "gateway/shield/retry.hpp"
#include "gateway/shield/upstream_limit.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/validate/image_record.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/ostream.h>
#include <spdlog/spdlog.h>

#include <simdjson.h>

#include <charconv>
#include <random>

// Keys print with control and non-ASCII bytes escaped (cache/key.hpp), safe for logs.
template <>
struct fmt::formatter<imagegate::cache::key> : fmt::ostream_formatter {};

namespace imagegate::gateway {
namespace {

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
    /// For budget_exhausted / upstream_rate_limited: seconds until a call may go out.
    std::uint64_t retry_after = 0;
};

// Cache-Status values for the access log (RFC 9211 parameters, abbreviated).
constexpr std::string_view cs_hit = "hit";
constexpr std::string_view cs_stored = "fwd=miss; stored";
constexpr std::string_view cs_forwarded = "fwd=miss";
constexpr std::string_view cs_stale = "fwd=stale";
constexpr std::string_view cs_collapsed = "collapsed";
constexpr std::string_view cs_error = "error";

template <class Out>
void append_number(Out& out, long long v) {
    char buf[24];
    const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    out.append(std::string_view(buf, static_cast<std::size_t>(end - buf)));
}

// Per-request headers after an entry's prepared head: the constant Content-Type, Age
// (RFC 9111 §5.1) and Cache-Status (RFC 9211) with the cache name `imagegate`.
void append_entry_headers(head_buffer& out, const cache::entry& e, clock::time_point now,
                          std::string_view forward, unsigned fwd_status, bool stored,
                          bool collapsed, std::string_view detail) {
    out += cache::content_type_line;
    out += "Age: ";
    append_number(out, e.age(now).count());
    out += "\r\nCache-Status: imagegate";
    if (forward.empty()) {
        out += "; hit";
    } else {
        out += "; fwd=";
        out += forward;
        if (fwd_status != 0) {
            out += "; fwd-status=";
            append_number(out, fwd_status);
        }
    }
    if (stored) {
        out += "; stored";
    }
    if (collapsed) {
        out += "; collapsed";
    }
    out += "; ttl=";
    append_number(out, e.ttl_remaining(now).count());
    if (!detail.empty()) {
        out += "; detail=";
        out += detail;
    }
    out += "\r\n";
}

// Returned straight into `co_return`: a named reply in `handle` would add a ~370-byte slot
// to its coroutine frame (GCC keeps every local of a coroutine in the frame), which is
// allocated on every request.
reply serve_entry(const entry_ptr& e, clock::time_point now, std::string_view forward,
                  unsigned fwd_status, bool stored, bool collapsed, std::string_view detail,
                  std::string_view cache_status) {
    reply r;
    r.cache_status = cache_status;
    r.status = e->status();
    r.prepared_head = e->head();
    append_entry_headers(r.head, *e, now, forward, fwd_status, stored, collapsed, detail);
    r.borrow_body(e->body());
    r.owner = e;
    r.route = "image";
    return r;
}

// RFC 9111 §5.2.1.4: request `Cache-Control: no-cache` (also the legacy `Pragma: no-cache`).
bool wants_no_cache(const request& req) {
    if (req.headers == nullptr) {
        return false;
    }
    for (const auto& field : *req.headers) {
        if (field.name() == http::field::cache_control || field.name() == http::field::pragma) {
            std::string v(field.value());
            for (auto& c : v) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            if (v.find("no-cache") != std::string::npos) {
                return true;
            }
        }
    }
    return false;
}

reply gateway_error(errc e, std::string_view detail, std::uint64_t retry_after = 0) {
    std::string extra = "Age: 0\r\nCache-Status: imagegate; fwd=miss; detail=";
    extra += detail;
    extra += "\r\n";
    if (e == errc::budget_exhausted || e == errc::upstream_rate_limited) {
        // RFC 9110 §10.2.3: when a call could go out again, truthfully (never 0: SDKs retry
        // at once on 0).
        extra += "Retry-After: ";
        append_number(extra, static_cast<long long>(std::max<std::uint64_t>(retry_after, 1)));
        extra += "\r\n";
    }
    reply r = make_error_reply(e, extra);
    r.route = "image";
    r.cache_status = cs_error;
    return r;
}

reply unauthorized_reply(image_stats& stats) {
    stats.unauthorized.fetch_add(1, std::memory_order_relaxed);
    reply r = gateway_error(errc::unauthorized, "unauthorized");
    r.head += "WWW-Authenticate: Bearer realm=\"imagegate\"\r\n";
    return r;
}

}  // namespace

struct image_handler::impl : std::enable_shared_from_this<impl> {
    cache::sharded_cache& cache;
    upstream::client& client;
    const authorizer& auth;
    image_policy policy;
    // The freshness windows (ttl, draft/negative ttl, stale windows) classify() stores
    // answers with: a snapshot a reload replaces whole (set_freshness).
    snapshot<image_policy> freshness;
    std::shared_ptr<spdlog::logger> log;
    image_stats stats;
    cache::single_flight<flight_key, fetch_outcome, flight_key_hash> flights;
    // Token mode: one credential (the gateway's token), one budget and one view of the
    // upstream's limit. Passthrough: one of each per caller credential, in `shields`.
    std::shared_ptr<shield::credential_shield> token_shield;
    shield::credential_shields shields;
    // Passthrough: every call made with a credential that holds no proof also takes a token
    // here, so made-up credentials cannot turn the gateway into a flood against the
    // upstream (Cloudflare also limits per client IP, and all our calls share one).
    shield::budget unproven_budget;
    proof_cache proofs;

    impl(cache::sharded_cache& c, upstream::client& cl, const authorizer& a, image_policy p,
         std::shared_ptr<spdlog::logger> l)
        : cache(c),
          client(cl),
          auth(a),
          policy(p),
          freshness(std::make_shared<const image_policy>(p)),
          log(std::move(l)),
          token_shield(std::make_shared<shield::credential_shield>(
              budget_options_from(p), shield::upstream_limit_options{})),
          shields({.budget = budget_options_from(p),
                   .limit = {},
                   .max_credentials = p.max_credential_shields}),
          unproven_budget({.budget = p.unproven_budget,
                           .window = p.budget_window,
                           .burst = std::min(p.burst, p.unproven_budget),
                           .background_reserve_percent = 20}),
          proofs(p.proof_ttl, p.max_proven_credentials) {}

    static shield::budget_options budget_options_from(const image_policy& p) {
        return {.budget = p.budget,
                .window = p.budget_window,
                .burst = p.burst,
                .background_reserve_percent = 20};
    }

    /// `cred` is the passthrough credential's digest (null in token mode): what the upstream
    /// answered it is remembered as a proof or drops one. `generation` is the key's cache
    /// generation from before the fetch: a purge since then keeps the answer from being
    /// stored (the waiters still get it).
    fetch_outcome classify(const cache::key& k, const image_route& route, upstream::response& resp,
                           clock::time_point received, const credential_digest* cred,
                           std::uint64_t generation);
};

namespace {

// Waits until the budget grants a token or `deadline` would pass. Returns the wait still
// needed when refused (zero when granted).
asio::awaitable<shield::duration> acquire_budget(shield::budget& budget, shield::priority prio,
                                                 clock::time_point deadline) {
    const auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex);
    for (;;) {
        const auto now = clock::now();
        const auto got = budget.try_acquire(now, prio);
        if (got.granted) {
            co_return shield::duration::zero();
        }
        // Background refreshes never wait: misses that clients wait for go first.
        if (prio == shield::priority::background || now + got.wait >= deadline) {
            co_return got.wait;
        }
        timer.expires_after(got.wait);
        co_await timer.async_wait(use_nothrow);
    }
}

shield::failed_attempt failure_of(const boost::system::result<upstream::response>& res,
                                  unsigned attempt) {
    shield::failed_attempt f;
    f.attempt = attempt;
    if (res) {
        f.kind = shield::failure_kind::status;
        f.status = res->status;
    } else if (res.error() == errc::upstream_connect_failed) {
        f.kind = shield::failure_kind::connect_failed;
    } else {
        f.kind = shield::failure_kind::exchange_failed;
    }
    return f;
}

// The fetch of one key: runs as its own task, owned by the flight, not by any client.
// Every upstream call passes the shield: no call while the upstream's 429 pause runs, one
// budget token per call (the retry included), Ratelimit headers observed on every answer.
// In passthrough mode the call carries the caller's credential `cred` (never the gateway's
// token) and passes that credential's own shield.
asio::awaitable<void> run_fetch(std::shared_ptr<image_handler::impl> self, flight_key fk,
                                image_route route, shield::priority prio,
                                std::shared_ptr<const upstream::credential> cred,
                                std::shared_ptr<cache::flight<fetch_outcome>> f) {
    const cache::key& k = fk.k;
    // Read before any upstream call: a purge from now on wins over this fetch's answer.
    const std::uint64_t generation = self->cache.generation(k);
    const std::shared_ptr<shield::credential_shield> sh =
        cred ? self->shields.get(fk.cred, clock::now()) : self->token_shield;
    thread_local std::mt19937_64 jitter{std::random_device{}()};
    // A fetch may wait for a budget token up to request_timeout; the exchange itself then gets
    // its own request_timeout, so a token granted late is not spent on a doomed call.
    const auto token_deadline = clock::now() + self->policy.request_timeout;
    const std::string target = "/accounts/" + route.account + "/images/v1/" + route.canonical_id;
    fetch_outcome out;
    for (unsigned attempt = 1;; ++attempt) {
        if (const auto blocked = sh->limit.blocked_for(clock::now())) {
            self->stats.paused_refused.fetch_add(1, std::memory_order_relaxed);
            out.error = errc::upstream_rate_limited;
            out.retry_after =
                static_cast<std::uint64_t>(shield::retry_after_seconds(*blocked).count());
            break;
        }
        auto wait = shield::duration::zero();
        if (cred && !self->proofs.has_any(fk.cred, clock::now())) {
            wait = co_await acquire_budget(self->unproven_budget, prio, token_deadline);
        }
        if (wait == shield::duration::zero()) {
            wait = co_await acquire_budget(sh->budget, prio, token_deadline);
        }
        if (wait > shield::duration::zero()) {
            self->stats.budget_refused.fetch_add(1, std::memory_order_relaxed);
            out.error = errc::budget_exhausted;
            out.retry_after = static_cast<std::uint64_t>(shield::retry_after_seconds(wait).count());
            break;
        }
        const auto deadline = clock::now() + self->policy.request_timeout;
        auto res = co_await self->client.fetch(target, deadline, cred);
        const auto now = clock::now();
        if (res) {
            sh->limit.observe_ratelimit(now, res->ratelimit, res->ratelimit_policy);
            if (res->status == 429) {
                // Cloudflare blocks every call of the token for a while: stop calling.
                sh->limit.pause_until(now, shield::parse_retry_after(res->retry_after));
                self->log->warn("upstream answered 429 for {}: pausing upstream calls", k);
                out = fetch_outcome{};
                out.error = errc::upstream_rate_limited;
                const auto blocked = sh->limit.blocked_for(now).value_or(shield::duration{});
                out.retry_after =
                    static_cast<std::uint64_t>(shield::retry_after_seconds(blocked).count());
                break;
            }
        }
        const auto failure = failure_of(res, attempt);
        const bool failed = !res || res->status == 502 || res->status == 503 || res->status == 504;
        if (failed) {
            const auto decision = shield::decide_retry(failure, now, deadline, {}, jitter);
            if (decision.retry) {
                self->stats.retries.fetch_add(1, std::memory_order_relaxed);
                const auto ex = co_await asio::this_coro::executor;
                asio::steady_timer backoff(ex, decision.backoff);
                co_await backoff.async_wait(use_nothrow);
                continue;
            }
        }
        if (!res) {
            const auto ec = res.error();
            out.error = ec.category() == imagegate_category() ? static_cast<errc>(ec.value())
                                                              : errc::upstream_protocol_error;
            self->stats.upstream_errors.fetch_add(1, std::memory_order_relaxed);
            self->log->warn("upstream fetch of {} failed: {}:{} {}", k, ec.category().name(),
                            ec.value(), ec.message());
        } else {
            out = self->classify(k, route, *res, now, cred ? &fk.cred : nullptr, generation);
        }
        break;
    }
    self->flights.finish(fk, f, std::move(out));
}

// A fetch task that throws is a bug; its waiters must still be answered.
struct fetch_done {
    std::shared_ptr<image_handler::impl> self;
    flight_key fk;
    std::shared_ptr<cache::flight<fetch_outcome>> f;
    void operator()(const std::exception_ptr& ep) {
        if (!ep) {
            return;
        }
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            self->log->error("fetch of {} threw: {}", fk.k, e.what());
        } catch (...) {
            self->log->error("fetch of {} threw", fk.k);
        }
        fetch_outcome out;
        out.error = errc::internal_error;
        self->flights.finish(fk, f, std::move(out));
    }
};

}  // namespace

fetch_outcome image_handler::impl::classify(const cache::key& k, const image_route& route,
                                            upstream::response& resp, clock::time_point received,
                                            const credential_digest* cred,
                                            std::uint64_t generation) {
    // One parser per thread, reused: it keeps its buffers sized for the largest record.
    thread_local simdjson::ondemand::parser parser;
    fetch_outcome out;
    out.upstream_status = resp.status;
    const auto windows = freshness.load();
    const image_policy& fresh = *windows;
    const auto store = [&](unsigned status, cache::entry_kind kind, clock::duration ttl,
                           clock::duration swr, clock::duration sie) {
        out.entry = cache::make_entry({.key = k,
                                       .status = status,
                                       .kind = kind,
                                       .body = resp.body,
                                       .stored_at = received,
                                       .ttl = ttl,
                                       .swr = swr,
                                       .sie = sie});
        out.stored = cache.put_if_current(out.entry, generation);
        if (out.stored) {
            stats.stored.fetch_add(1, std::memory_order_relaxed);
        }
    };
    if (resp.status == 200) {
        const auto v =
            validate::validate_image(resp.body, resp.body.capacity(), route.image_id, parser);
        if (!v.ok()) {
            stats.invalid.fetch_add(1, std::memory_order_relaxed);
            // The pointer names the upstream's members: escaped, or it could forge a line.
            log->warn("upstream record for {} rejected at {}: {}", k,
                      log_quoted(v.failure->pointer), v.failure->reason);
            out.error = errc::invalid_upstream_json;
            return out;
        }
        const auto ttl = v.draft ? std::min(fresh.draft_ttl, fresh.ttl) : fresh.ttl;
        // A draft is an upload in progress: never answer it stale.
        const auto swr =
            v.draft ? clock::duration::zero() : clock::duration(fresh.stale_while_revalidate);
        const auto sie = v.draft ? clock::duration::zero() : clock::duration(fresh.stale_if_error);
        store(200, v.draft ? cache::entry_kind::draft : cache::entry_kind::positive, ttl, swr, sie);
        if (cred != nullptr) {
            proofs.prove(*cred, k.account(), received);
        }
        return out;
    }
    if (resp.status >= 400 && resp.status < 500) {
        const auto env = validate::validate_error_envelope(resp.body, resp.body.capacity(), parser);
        if (!env.ok()) {
            stats.invalid.fetch_add(1, std::memory_order_relaxed);
            log->warn("upstream {} answer for {} rejected at {}: {}", resp.status, k,
                      log_quoted(env.failure->pointer), env.failure->reason);
            out.error = errc::invalid_upstream_json;
            return out;
        }
        if (resp.status == 404 && env.code == 5404) {
            // "Image not found" is an answer too: stored briefly so a flood of requests for a
            // missing id does not become a flood upstream. Never served stale.
            store(404, cache::entry_kind::negative, fresh.negative_ttl, {}, {});
            // Cloudflare checks the credential before the image: 5404 proves the credential
            // may read the account.
            if (cred != nullptr) {
                proofs.prove(*cred, k.account(), received);
            }
            return out;
        }
        if (cred != nullptr && (resp.status == 401 || resp.status == 403)) {
            // The upstream refused this credential: whatever it was once allowed to read is
            // forgotten (all accounts for 401, this account for 403).
            stats.proof_rejections.fetch_add(1, std::memory_order_relaxed);
            if (resp.status == 401) {
                proofs.revoke_all(*cred);
            } else {
                proofs.revoke(*cred, k.account());
            }
        }
        // 401, 403 and other 4xx: the upstream's answer, passed through, never stored.
        stats.passthrough.fetch_add(1, std::memory_order_relaxed);
        out.entry = cache::make_entry({.key = k,
                                       .status = resp.status,
                                       .kind = cache::entry_kind::negative,
                                       .body = resp.body,
                                       .stored_at = received});
        return out;
    }
    if (resp.status >= 500) {
        log->warn("upstream answered {} for {}", resp.status, k);
        out.error = errc::upstream_bad_status;
        return out;
    }
    log->warn("upstream answered unexpected status {} for {}", resp.status, k);
    out.error = errc::upstream_protocol_error;
    return out;
}

image_handler::image_handler(cache::sharded_cache& cache, upstream::client& client,
                             const authorizer& auth, image_policy policy,
                             std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_shared<impl>(cache, client, auth, policy, std::move(log))) {}

image_handler::~image_handler() = default;

void image_handler::set_freshness(const image_policy& p) {
    impl_->freshness.store(std::make_shared<const image_policy>(p));
}

const image_stats& image_handler::stats() const noexcept { return impl_->stats; }

namespace {

// The part of handle() past the fresh hit: joins or starts the flight for the key and
// answers from its outcome, a stale entry or an error. `route` views the request target,
// which the session keeps until the reply is written.
asio::awaitable<reply> answer_after_lookup(std::shared_ptr<image_handler::impl> handler,
                                           image_target route, caller_credential caller,
                                           entry_ptr cached, cache::freshness state,
                                           clock::time_point now) {
    auto& self = *handler;
    // The owning key is built only here, past the hit path.
    const flight_key fk{cache::key(route.key()), caller.digest};
    auto joined = self.flights.join(fk);
    // This session's worker: the leader's fetch runs here, on this worker's upstream pool,
    // and every waiter (this one too) is woken on its own worker (cache::flight::wait).
    const auto ex = co_await asio::this_coro::executor;
    IMAGEGATE_CHECK(runs_on_this_worker(ex), "a flight's waiters wait on their worker");
    if (joined.leader) {
        const auto prio = state == cache::freshness::stale_revalidate
                              ? shield::priority::background
                              : shield::priority::foreground;
        // A background refresh in passthrough uses the credential of the request that
        // triggered it (which holds a proof for the account). The fetch is a task of its
        // own (it belongs to the flight, not to this client), on this worker.
        asio::co_spawn(ex, run_fetch(handler, fk, route.to_route(), prio, caller.cred, joined.f),
                       fetch_done{handler, fk, joined.f});
    }

    if (state == cache::freshness::stale_revalidate) {
        // RFC 5861 §3: answer the stale entry now; the refresh started (or joined) above
        // runs on its own.
        self.stats.stale_swr.fetch_add(1, std::memory_order_relaxed);
        co_return serve_entry(cached, now, "stale", 0, false, false, "stale-while-revalidate",
                              cs_stale);
    }
    if (!joined.leader) {
        self.stats.collapsed.fetch_add(1, std::memory_order_relaxed);
    }
    if (cached) {
        self.stats.stale_refetches.fetch_add(1, std::memory_order_relaxed);
    } else {
        self.stats.misses.fetch_add(1, std::memory_order_relaxed);
    }

    const auto deadline = clock::now() + self.policy.coalesce_timeout;
    std::optional<fetch_outcome> got = co_await joined.f->wait(deadline);
    const auto done = clock::now();
    const bool collapsed = !joined.leader;
    if (!got) {
        self.stats.coalesce_timeouts.fetch_add(1, std::memory_order_relaxed);
        if (cached && cached->classify(done) != cache::freshness::expired) {
            self.stats.stale_error.fetch_add(1, std::memory_order_relaxed);
            co_return serve_entry(cached, done, "stale", 0, false, collapsed, "stale-if-error",
                                  cs_stale);
        }
        co_return gateway_error(errc::single_flight_timeout, "single_flight_timeout");
    }
    if (got->error != errc{}) {
        // RFC 5861 §4: inside stale-if-error a failed refresh answers the stale entry.
        if (cached && cached->classify(done) != cache::freshness::expired) {
            self.stats.stale_error.fetch_add(1, std::memory_order_relaxed);
            co_return serve_entry(cached, done, "stale", 0, false, collapsed, "stale-if-error",
                                  cs_stale);
        }
        co_return gateway_error(got->error, to_string(got->error), got->retry_after);
    }
    const std::string_view forward = cached ? "stale" : "miss";
    co_return serve_entry(got->entry, done, forward, got->upstream_status, got->stored, collapsed,
                          {},
                          collapsed     ? cs_collapsed
                          : got->stored ? cs_stored
                                        : cs_forwarded);
}

}  // namespace

// Answers a fresh hit (and every refusal) without a coroutine: no frame to allocate, no
// suspension; only what has to wait for the upstream goes on to answer_after_lookup.
handler_result image_handler::handle(request req) {
    image_target route = parse_image_target(req.target);
    const bool readable = req.method == http::verb::get || req.method == http::verb::head;
    if (!route.ok() || !readable) {
        errc e = route.error;
        if (e != errc::route_not_found && !readable) {
            e = errc::method_not_allowed;
        }
        reply r = gateway_error(e, to_string(e));
        if (e == errc::route_not_found) {
            r.route = "not_found";
        }
        return r;
    }

    auto& self = *impl_;
    // Decided before the cache and before any flight: a refused caller learns nothing about
    // what is cached and costs no upstream call.
    caller_credential caller;
    if (self.policy.passthrough) {
        caller = read_caller_credential(req.headers);
        if (caller.state == caller_credential::status::missing) {
            return unauthorized_reply(self.stats);
        }
        if (caller.state == caller_credential::status::malformed) {
            self.stats.malformed_credentials.fetch_add(1, std::memory_order_relaxed);
            return gateway_error(errc::bad_request, "bad_request");
        }
    } else {
        switch (self.auth.check(req.headers, route.account())) {
        case authorizer::verdict::allowed: break;
        case authorizer::verdict::unauthorized: return unauthorized_reply(self.stats);
        case authorizer::verdict::forbidden: {
            self.stats.forbidden.fetch_add(1, std::memory_order_relaxed);
            return gateway_error(errc::forbidden, "forbidden");
        }
        }
    }
    const auto now = clock::now();
    entry_ptr cached = self.cache.get(route.key(), now);
    if (cached && caller.cred) {
        // Passthrough: the entry (fresh, stale or negative) is this caller's to read only if
        // the upstream accepted its credential for the account lately. Otherwise it does not
        // exist for this request: not answered, not a stale fallback; the credential goes
        // upstream on its own flight.
        if (self.proofs.is_proven(caller.digest, route.account(), now)) {
            self.stats.proof_hits.fetch_add(1, std::memory_order_relaxed);
        } else {
            self.stats.proof_misses.fetch_add(1, std::memory_order_relaxed);
            cached.reset();
        }
    }
    auto state = cached ? cached->classify(now) : cache::freshness::expired;
    if (state == cache::freshness::fresh && self.policy.honor_client_no_cache &&
        wants_no_cache(req)) {
        // Refetch, but keep the entry as the fallback if the fetch fails.
        state = cache::freshness::stale_if_error;
    }
    if (state == cache::freshness::fresh) {
        self.stats.hits.fetch_add(1, std::memory_order_relaxed);
        if (cached->kind() == cache::entry_kind::negative) {
            self.stats.negative_hits.fetch_add(1, std::memory_order_relaxed);
        }
        return serve_entry(cached, now, {}, 0, false, false, {}, cs_hit);
    }

    // Everything else waits for a fetch (or starts one): a coroutine from here on.
    return answer_after_lookup(impl_, std::move(route), std::move(caller), std::move(cached), state,
                               now);
}

void image_handler::render_metrics(std::string& out) const {
    const auto& s = impl_->stats;
    const auto v = [](const std::atomic<std::uint64_t>& a) {
        return a.load(std::memory_order_relaxed);
    };
    using metrics::append_sample;
    append_sample(out, "imagegate_cache_hits_total", "counter",
                  "Image requests answered fresh from the cache.", v(s.hits));
    append_sample(out, "imagegate_cache_misses_total", "counter",
                  "Image requests with no cached entry.", v(s.misses));
    append_sample(out, "imagegate_cache_stale_refetches_total", "counter",
                  "Image requests whose entry was past freshness and was fetched again.",
                  v(s.stale_refetches));
    append_sample(out, "imagegate_cache_stored_total", "counter",
                  "Validated upstream answers stored.", v(s.stored));
    append_sample(out, "imagegate_collapsed_requests_total", "counter",
                  "Requests that waited for another request's upstream fetch.", v(s.collapsed));
    append_sample(out, "imagegate_upstream_invalid_total", "counter",
                  "Upstream answers that failed validation (answered 502, not stored).",
                  v(s.invalid));
    append_sample(out, "imagegate_upstream_passthrough_total", "counter",
                  "Upstream 4xx answers passed through and not stored.", v(s.passthrough));
    append_sample(out, "imagegate_coalesce_timeouts_total", "counter",
                  "Requests that waited shield.coalesce_timeout for a fetch in vain.",
                  v(s.coalesce_timeouts));
    append_sample(out, "imagegate_upstream_failures_total", "counter",
                  "Upstream fetches that failed (connect, TLS, timeout, protocol).",
                  v(s.upstream_errors));
    append_sample(out, "imagegate_negative_hits_total", "counter",
                  "Fresh 'image not found' answers from the cache.", v(s.negative_hits));
    out +=
        "# HELP imagegate_stale_answers_total Stale entries answered, by reason.\n"
        "# TYPE imagegate_stale_answers_total counter\n";
    append_sample(out, "imagegate_stale_answers_total", "", "", v(s.stale_swr),
                  "reason=\"stale-while-revalidate\"");
    append_sample(out, "imagegate_stale_answers_total", "", "", v(s.stale_error),
                  "reason=\"stale-if-error\"");
    append_sample(out, "imagegate_upstream_retries_total", "counter",
                  "Second upstream attempts after a connect error or 502/503/504.", v(s.retries));
    append_sample(out, "imagegate_budget_refused_total", "counter",
                  "Fetches refused because no budget token was available in time.",
                  v(s.budget_refused));
    append_sample(out, "imagegate_auth_refused_total", "counter",
                  "Image requests refused: no/unknown client key (401) or account not allowed "
                  "(403).",
                  v(s.unauthorized) + v(s.forbidden));
    append_sample(out, "imagegate_pause_refused_total", "counter",
                  "Fetches refused because an upstream 429 pause was running.",
                  v(s.paused_refused));
    const auto now = std::chrono::steady_clock::now();
    const bool passthrough = impl_->policy.passthrough;
    if (!passthrough) {
        const auto tokens = impl_->token_shield->budget.tokens(now);
        append_sample(out, "imagegate_budget_tokens", "gauge",
                      "Upstream calls that may go out right now (token bucket level).",
                      static_cast<std::uint64_t>(tokens < 0 ? 0 : tokens));
    }
    const auto lim =
        passthrough ? impl_->shields.limit_counters() : impl_->token_shield->limit.counters();
    append_sample(out, "imagegate_upstream_429_total", "counter",
                  "Upstream 429 answers (each pauses upstream calls).", lim.upstream_429s);
    append_sample(out, "imagegate_upstream_paused_seconds_total", "counter",
                  "Seconds upstream calls were paused (429 Retry-After or a low Ratelimit).",
                  static_cast<std::uint64_t>(lim.seconds_paused));
    if (!passthrough) {
        append_sample(out, "imagegate_upstream_paused", "gauge",
                      "1 while upstream calls are paused.",
                      impl_->token_shield->limit.is_paused(now) ? 1 : 0);
        return;
    }
    // Passthrough: per-credential state, reported in aggregate only (no credential, digest or
    // prefix of one in any label).
    append_sample(out, "imagegate_upstream_paused", "gauge",
                  "Caller credentials whose upstream calls are paused.",
                  impl_->shields.paused(now));
    append_sample(out, "imagegate_passthrough_credentials", "gauge",
                  "Caller credentials with their own budget (passthrough).", impl_->shields.size());
    append_sample(out, "imagegate_passthrough_proven_credentials", "gauge",
                  "Caller credentials with remembered upstream proofs (passthrough).",
                  impl_->proofs.size());
    metrics::append_header(out, "imagegate_passthrough_proofs_total", "counter",
                           "Cached entries answered to a credential with a proof (hit) or sent "
                           "upstream for lack of one (miss), and upstream refusals (rejected).");
    append_sample(out, "imagegate_passthrough_proofs_total", "", "", v(s.proof_hits),
                  "result=\"hit\"");
    append_sample(out, "imagegate_passthrough_proofs_total", "", "", v(s.proof_misses),
                  "result=\"miss\"");
    append_sample(out, "imagegate_passthrough_proofs_total", "", "", v(s.proof_rejections),
                  "result=\"rejected\"");
    append_sample(out, "imagegate_passthrough_malformed_total", "counter",
                  "Requests refused with 400 for a malformed credential (passthrough).",
                  v(s.malformed_credentials));
}

}  // namespace imagegate::gateway
