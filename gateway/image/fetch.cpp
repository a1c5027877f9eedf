// The shielded upstream fetch of one key: a slot from the gate (queued, or refused with a
// truthful Retry-After), given back when every client left, the one retry rule, and the
// classification of what the upstream answered.
#include "gateway/image/impl.hpp"

#include "cache/sharded_cache.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/log_escape.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/shield/retry.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/validate/image_record.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/ostream.h>
#include <spdlog/spdlog.h>

#include <simdjson.h>

#include <random>

// Keys print with control and non-ASCII bytes escaped (cache/key.hpp), safe for logs.
template <>
struct fmt::formatter<imagegate::cache::key> : fmt::ostream_formatter {};

namespace imagegate::gateway {
namespace {

using flight_ptr = std::shared_ptr<cache::flight<fetch_outcome>>;
constexpr auto relaxed = std::memory_order_relaxed;

shield::failed_attempt failure_of(const boost::system::result<upstream::response>& res,
                                  const upstream::attempt_facts& facts, unsigned attempt) {
    shield::failed_attempt f;
    f.attempt = attempt;
    if (res) {
        f.kind = shield::failure_kind::status;
        f.status = res->status;
    } else if (res.error() == errc::upstream_connect_failed) {
        f.kind = shield::failure_kind::connect_failed;
    } else if (facts.reused_connection && !facts.response_started &&
               res.error() != errc::upstream_timeout) {
        f.kind = shield::failure_kind::stale_connection;
    } else {
        f.kind = shield::failure_kind::exchange_failed;
    }
    return f;
}

// Per-thread state lives behind functions that are never inlined: GCC 12 inlines callees
// into the fetch coroutine and then reaches their thread_locals through an address it keeps
// across suspension points, which under ASan showed as a corrupted simdjson parser freed at
// thread exit.

/// Random bits for the retry's jitter.
[[gnu::noinline]] std::uint64_t random_bits() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    return rng();
}

/// One parser per thread, reused: it keeps its buffers sized for the largest record.
[[gnu::noinline]] simdjson::ondemand::parser& thread_parser() {
    thread_local simdjson::ondemand::parser parser;
    return parser;
}

/// Failures a burst of SDK retries would only repeat: remembered for a second.
bool is_remembered(errc e) {
    switch (e) {
    case errc::upstream_connect_failed:
    case errc::upstream_tls_failed:
    case errc::upstream_timeout:
    case errc::upstream_bad_status:
    case errc::upstream_too_large:
    case errc::upstream_protocol_error:
    case errc::invalid_upstream_json:
    case errc::pool_exhausted:
    case errc::internal_error: return true;
    default: return false;
    }
}

// The fetch of one key: runs as its own task, owned by the flight, not by any client.
// Every upstream call passes the gate: one granted slot per attempt (the retry included),
// none while the upstream's pause runs, rate-limit headers observed on every answer. A queued
// fetch whose clients all left gives its slot back before spending it. In passthrough mode the
// call carries the caller's credential `cred` (never the gateway's token) and passes that
// credential's own shield.
asio::awaitable<void> run_fetch(std::shared_ptr<image_handler::impl> self, flight_key fk,
                                image_route route, shield::priority prio,
                                std::shared_ptr<const upstream::credential> cred, flight_ptr f,
                                admission::ticket first) {
    auto& s = *self;
    const cache::key& k = fk.k;
    const credential_digest* digest = cred ? &fk.cred : nullptr;
    const std::string target = "/accounts/" + route.account + "/images/v1/" + route.upstream_id;
    // Read before any upstream call: a purge from now on wins over this fetch's answer.
    const std::uint64_t generation = s.cache.generation(k);
    // Set when the first attempt starts: every attempt (the retry too) ends by it.
    // Two clocks: `time` (logical: freshness, proofs, slots, failures; tests move it) and the
    // steady clock of the waits (`deadline`, the retry's backoff).
    const time_source& time = *s.policy.time;
    clock::time_point deadline{};
    const auto asked = time.now();
    // A passthrough credential without a proof for the account asks on a new connection:
    // only an answer that is certainly its own may prove it (upstream::exchange_facts).
    const bool needs_certainty =
        digest != nullptr && !s.proofs.is_proven(fk.cred, k.account(), asked);
    auto choice =
        needs_certainty ? upstream::connection_choice::fresh : upstream::connection_choice::pooled;
    fetch_outcome out;
    for (unsigned attempt = 1;; ++attempt) {
        // The first attempt's slot was granted by the request that started the fetch
        // (answer_after_lookup), so a refusal is answered without leaving its thread.
        admission::ticket t = std::move(first);
        if (attempt > 1) {
            // A retry neither holds nor claims a slot for the key: refused, it answers the
            // first attempt's failure, which the client did not cause.
            admission::call c = first_attempt_call(s, fk, prio, cred != nullptr, time.now());
            c.key = {};
            c.max_wait = std::min<clock::duration>(
                c.max_wait, std::max(deadline - clock::now(), clock::duration::zero()));
            t = co_await s.gate->reserve(c);
            if (!t.granted()) {
                s.stats.retry_refused.fetch_add(1, relaxed);
                break;  // `out` holds the first attempt's failure
            }
        }
        const bool queued = t.slot() > time.now();
        if (queued) {
            // Woken once, at the slot. A flight every client left gives the slot back
            // (handed to the next in line) instead of spending it on an answer nobody reads.
            f->on_empty(t.abandoner());
            bool abandoned = false;
            for (;;) {
                const bool ready = co_await t.wait();
                if (ready && f->members() > 0) {
                    break;
                }
                if (s.flights.try_abandon(fk, f)) {
                    abandoned = true;
                    break;
                }
                t.resume();  // someone joined meanwhile: keep the slot
            }
            f->on_empty(nullptr);
            if (abandoned) {
                s.stats.abandoned.fetch_add(1, relaxed);
                t.release_abandoned();
                if (s.l2) {
                    s.l2->after_fetch(k, nullptr);  // gives the fill lease back
                }
                co_return;  // nobody waits for an outcome
            }
        }
        if (attempt == 1) {
            if (queued) {
                // Stored meanwhile by another flight (passthrough: another credential's, which
                // this one may read) or another path: the slot goes to someone else.
                const auto now = time.now();
                if (auto e = s.cache.get(k.view(), now);
                    e && e->stored_at() > asked && e->classify(now) == cache::freshness::fresh &&
                    (digest == nullptr || s.proofs.is_proven(fk.cred, k.account(), now))) {
                    s.stats.satisfied_elsewhere.fetch_add(1, relaxed);
                    out.entry = std::move(e);
                    out.from_cache = true;
                    break;
                }
            }
            deadline = clock::now() + s.policy.request_timeout;
        }
        t.commit();
        upstream::attempt_facts facts;
        auto res = co_await s.client.fetch(target, deadline, cred, choice, &facts);
        const auto now = time.now();
        if (res) {
            const auto paused = s.gate->observe(
                digest, {res->status, res->retry_after, res->ratelimit, res->ratelimit_policy});
            if (res->status == 429) {
                // Cloudflare blocks every call of the token for a while: stop calling.
                s.log->warn("upstream answered 429 for {}: pausing upstream calls", k);
                out = fetch_outcome{};
                out.error = errc::upstream_rate_limited;
                out.refused = admission::refusal::paused;
                out.retry = shield::advise_retry(paused.value_or(shield::duration::zero()), false);
                break;
            }
        }
        if (!res) {
            const auto ec = res.error();
            out = fetch_outcome{};
            out.error = ec.category() == imagegate_category() ? static_cast<errc>(ec.value())
                                                              : errc::upstream_protocol_error;
            s.log->warn("upstream fetch of {} failed: {}:{} {}", k, ec.category().name(),
                        ec.value(), ec.message());
        } else {
            out = s.classify(k, route, *res, now, digest, generation);
        }
        const bool failed = !res || res->status == 502 || res->status == 503 || res->status == 504;
        if (failed) {
            const auto decision = shield::decide_retry(failure_of(res, facts, attempt),
                                                       clock::now(), deadline, {}, random_bits());
            if (decision.retry) {
                s.stats.retries.fetch_add(1, relaxed);
                if (facts.reused_connection) {
                    choice = upstream::connection_choice::fresh;
                }
                const auto ex = co_await asio::this_coro::executor;
                asio::steady_timer backoff(ex, decision.backoff);
                co_await backoff.async_wait(use_nothrow);
                continue;
            }
        }
        break;
    }
    if (out.error != errc{} && is_remembered(out.error)) {
        if (out.upstream_status == 0) {
            s.stats.upstream_errors.fetch_add(1, relaxed);  // no HTTP answer at all
        }
        s.failures.remember(fk, failed_fetch{out.error}, time.now());
        out.retry = shield::advise_retry(shield::failure_memo_ttl, false);
    }
    if (s.l2) {
        // A stored answer goes to the fleet's L2 in the background; the lease is given back.
        s.l2->after_fetch(k, out.stored ? out.entry : nullptr);
    }
    s.flights.finish(fk, f, std::move(out));
}

// A fetch task that throws is a bug; its waiters must still be answered.
struct fetch_done {
    std::shared_ptr<image_handler::impl> self;
    flight_key fk;
    flight_ptr f;
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

admission::call first_attempt_call(image_handler::impl& s, const flight_key& fk,
                                   shield::priority prio, bool passthrough, clock::time_point now) {
    admission::call c;
    c.key = fk.k.joined();
    c.prio = prio;
    c.max_wait = s.policy.max_queue_wait;
    c.credential = passthrough ? &fk.cred : nullptr;
    c.proven = !passthrough || s.proofs.has_any(fk.cred, now);
    return c;
}

fetch_outcome refusal_outcome(image_handler::impl& s, const admission::ticket& t) {
    (t.reason() == admission::refusal::paused ? s.stats.paused_refused : s.stats.budget_refused)
        .fetch_add(1, relaxed);
    fetch_outcome out;
    out.error = t.reason() == admission::refusal::paused ? errc::upstream_rate_limited
                                                         : errc::budget_exhausted;
    out.refused = t.reason();
    out.retry = shield::advise_retry(t.retry_wait(), t.held());
    return out;
}

void start_fetch(asio::any_io_executor ex, std::shared_ptr<image_handler::impl> self, flight_key fk,
                 image_route route, shield::priority prio,
                 std::shared_ptr<const upstream::credential> cred, flight_ptr f,
                 admission::ticket first) {
    // On the worker of the session that starts it (the caller's executor): its upstream
    // exchange uses that worker's pool, and the flight's waiters on this worker are woken
    // without a hop. No strand: the fetch is one sequential coroutine and the worker one
    // thread, which is what its slot timer needs (admission/ticket).
    fetch_done done{self, fk, f};
    asio::co_spawn(ex,
                   run_fetch(std::move(self), std::move(fk), std::move(route), prio,
                             std::move(cred), std::move(f), std::move(first)),
                   std::move(done));
}

void start_or_refuse(asio::any_io_executor ex, std::shared_ptr<image_handler::impl> self,
                     flight_key fk, image_route route, shield::priority prio,
                     std::shared_ptr<const upstream::credential> cred, flight_ptr f,
                     admission::ticket t) {
    if (t.granted()) {
        start_fetch(std::move(ex), std::move(self), std::move(fk), std::move(route), prio,
                    std::move(cred), std::move(f), std::move(t));
        return;
    }
    if (self->l2) {
        self->l2->after_fetch(fk.k, nullptr);  // gives the fill lease back
    }
    self->flights.finish(fk, f, refusal_outcome(*self, t));
}

fetch_outcome l2_outcome(std::shared_ptr<const cache::entry> e, bool stored) {
    fetch_outcome hit;
    hit.entry = std::move(e);
    hit.stored = stored;
    hit.from_l2 = true;
    return hit;
}

namespace {

asio::awaitable<void> run_fleet_refresh(std::shared_ptr<image_handler::impl> self, flight_key fk,
                                        image_route route,
                                        std::shared_ptr<const upstream::credential> cred,
                                        flight_ptr f) {
    auto& s = *self;
    // Fresh only: a value as stale as this instance's own would end the refresh with
    // nothing refreshed, and every later request would start another one.
    fleet::l2_cache::want want{.image_id = route.image_id, .fresh_only = true};  // named: g++ 12
    fleet::l2_cache::found l2 = co_await s.l2->before_fetch(fk.k, std::move(want), true);
    if (l2.entry) {
        s.stats.fleet_refreshes_from_l2.fetch_add(1, relaxed);
        s.flights.finish(fk, f, l2_outcome(std::move(l2.entry), l2.stored));
        co_return;
    }
    const admission::call c = first_attempt_call(s, fk, shield::priority::background,
                                                 cred != nullptr, s.policy.time->now());
    admission::ticket t = co_await s.gate->reserve(c);
    const auto ex = co_await asio::this_coro::executor;
    start_or_refuse(ex, std::move(self), std::move(fk), std::move(route),
                    shield::priority::background, std::move(cred), std::move(f), std::move(t));
}

}  // namespace

void start_fleet_refresh(asio::any_io_executor ex, std::shared_ptr<image_handler::impl> self,
                         flight_key fk, image_route route,
                         std::shared_ptr<const upstream::credential> cred, flight_ptr f) {
    fetch_done done{self, fk, f};
    asio::co_spawn(ex,
                   run_fleet_refresh(std::move(self), std::move(fk), std::move(route),
                                     std::move(cred), std::move(f)),
                   std::move(done));
}

fetch_outcome image_handler::impl::classify(const cache::key& k, const image_route& route,
                                            upstream::response& resp, clock::time_point received,
                                            const credential_digest* cred,
                                            std::uint64_t generation) {
    simdjson::ondemand::parser& parser = thread_parser();
    fetch_outcome out;
    out.upstream_status = resp.status;
    // The windows a reload may have replaced (set_freshness): one snapshot for this answer.
    const auto windows = freshness.load();
    const image_policy& fresh = *windows;
    const upstream::exchange_facts& facts = resp.facts;
    if (!facts.clean() && !facts.fresh_connection) {
        // Unframed or followed by stray bytes on a connection that carried other requests:
        // it may be the answer to one of them. Nobody gets it.
        stats.uncertain_refused.fetch_add(1, relaxed);
        log->warn("upstream answer for {} refused: {} on a reused connection", k,
                  fmt::streamed(facts));
        out.error = errc::upstream_protocol_error;
        return out;
    }
    // Certainly this request's answer: it may prove the credential. Clean: it may be stored.
    const bool may_store = facts.clean();
    if (!may_store) {
        stats.uncertain_served.fetch_add(1, relaxed);
    }
    // Only an answer that is certainly this request's proves its credential; a refusal
    // (401/403) revokes proofs however it came: forgetting one costs a call, never a leak.
    const credential_digest* prover = facts.certain() ? cred : nullptr;
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
        out.stored = may_store && cache.put_if_current(out.entry, generation);
        if (out.stored) {
            stats.stored.fetch_add(1, relaxed);
        }
    };
    if (resp.status == 200) {
        const auto v =
            validate::validate_image(resp.body, resp.body.capacity(), route.image_id, parser);
        if (!v.ok()) {
            stats.invalid.fetch_add(1, relaxed);
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
        if (prover != nullptr) {
            proofs.prove(*prover, k.account(), received);
        }
        return out;
    }
    if (resp.status >= 400 && resp.status < 500) {
        const auto env = validate::validate_error_envelope(resp.body, resp.body.capacity(), parser);
        if (!env.ok()) {
            stats.invalid.fetch_add(1, relaxed);
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
            if (prover != nullptr) {
                proofs.prove(*prover, k.account(), received);
            }
            return out;
        }
        if (cred != nullptr && (resp.status == 401 || resp.status == 403)) {
            // The upstream refused this credential: whatever it was once allowed to read is
            // forgotten (all accounts for 401, this account for 403).
            stats.proof_rejections.fetch_add(1, relaxed);
            if (resp.status == 401) {
                proofs.revoke_all(*cred);
            } else {
                proofs.revoke(*cred, k.account());
            }
        }
        // 401, 403 and other 4xx: the upstream's answer, passed through, never stored.
        stats.passthrough.fetch_add(1, relaxed);
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

}  // namespace imagegate::gateway
