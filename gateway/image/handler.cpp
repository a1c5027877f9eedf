#include "gateway/image/handler.hpp"

#include "cache/sharded_cache.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/image/impl.hpp"
#include "gateway/upstream/client.hpp"

#include <boost/asio/this_coro.hpp>

#include <array>
#include <charconv>
#include <string>

namespace imagegate::gateway {
namespace {

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

/// "error; detail=<errc>[; reason=<refusal>]" for the access log, built once per pair.
std::string_view access_log_status(errc e, admission::refusal why) noexcept {
    constexpr std::size_t refusals = 7;
    static const auto table = [] {
        std::array<std::array<std::string, refusals>, std::size(all_errcs) + 1> t;
        for (std::size_t i = 0; i <= std::size(all_errcs); ++i) {
            for (std::size_t j = 0; j < refusals; ++j) {
                const errc code = i == 0 ? errc{} : all_errcs[i - 1];
                t[i][j] = std::string(cs_error) + "; detail=" +
                          std::string(error_detail(code, static_cast<admission::refusal>(j)));
            }
        }
        return t;
    }();
    std::size_t i = 0;
    for (std::size_t n = 0; n < std::size(all_errcs); ++n) {
        if (all_errcs[n] == e) {
            i = n + 1;
        }
    }
    return table[i][static_cast<std::size_t>(why) % refusals];
}

reply gateway_error(errc e, admission::refusal why = admission::refusal::none,
                    std::optional<shield::retry_advice> retry = std::nullopt) {
    std::string extra = "Age: 0\r\nCache-Status: imagegate; fwd=miss; detail=";
    extra += error_detail(e, why);
    extra += "\r\n";
    std::optional<retry_after> after;
    if (retry) {
        after =
            retry_after{.seconds = static_cast<std::uint64_t>(retry->seconds.count()),
                        .milliseconds = static_cast<std::uint64_t>(retry->milliseconds.count())};
    }
    reply r = make_error_reply(e, extra, after);
    r.route = "image";
    r.cache_status = access_log_status(e, why);
    return r;
}

reply unauthorized_reply(image_stats& stats) {
    stats.unauthorized.fetch_add(1, std::memory_order_relaxed);
    reply r = gateway_error(errc::unauthorized);
    r.head += "WWW-Authenticate: Bearer realm=\"imagegate\"\r\n";
    return r;
}

}  // namespace

std::string_view error_detail(errc e, admission::refusal why) noexcept {
    // RFC 9211 `detail` plus an extension parameter naming the shield's reason; static
    // strings, so a reply can point at them.
    if (e == errc::budget_exhausted || e == errc::upstream_rate_limited) {
        static const auto table = [] {
            std::array<std::array<std::string, 7>, 2> t;
            for (std::size_t j = 0; j < 7; ++j) {
                const auto why_j = static_cast<admission::refusal>(j);
                const std::string reason =
                    why_j == admission::refusal::none
                        ? std::string()
                        : "; reason=" + std::string(admission::to_string(why_j));
                t[0][j] = "budget_exhausted" + reason;
                t[1][j] = "upstream_rate_limited" + reason;
            }
            return t;
        }();
        return table[e == errc::budget_exhausted ? 0 : 1][static_cast<std::size_t>(why) % 7];
    }
    return to_string(e);
}

image_handler::impl::impl(cache::sharded_cache& c, upstream::client& cl, const authorizer& a,
                          image_policy p, std::shared_ptr<spdlog::logger> l,
                          std::shared_ptr<admission::gate> g)
    : cache(c),
      client(cl),
      auth(a),
      policy(p),
      freshness(std::make_shared<const image_policy>(p)),
      log(std::move(l)),
      gate(std::move(g)),
      proofs(p.proof_ttl, p.max_proven_credentials),
      failures(p.max_remembered_failures) {}

image_handler::image_handler(cache::sharded_cache& cache, upstream::client& client,
                             const authorizer& auth, image_policy policy,
                             std::shared_ptr<spdlog::logger> log,
                             std::shared_ptr<admission::gate> gate)
    : impl_(std::make_shared<impl>(cache, client, auth, policy, std::move(log), std::move(gate))) {}

image_handler::~image_handler() = default;

void image_handler::set_freshness(const image_policy& p) {
    impl_->freshness.store(std::make_shared<const image_policy>(p));
}

const image_stats& image_handler::stats() const noexcept { return impl_->stats; }

void image_handler::attach_fleet(std::shared_ptr<fleet::l2_cache> l2) { impl_->l2 = std::move(l2); }

namespace {

// The part of handle() past the fresh hit: joins or starts the flight for the key and
// answers from its outcome, a stale entry or an error. `route` views the request target,
// which the session keeps until the reply is written.
asio::awaitable<reply> answer_after_lookup(std::shared_ptr<image_handler::impl> handler,
                                           image_target route, caller_credential caller,
                                           entry_ptr cached, cache::freshness state,
                                           clock::time_point now) {
    auto& self = *handler;
    // A client that hangs up cancels this coroutine (http/server.cpp); what it awaits must
    // then end quietly, never throw between joining a flight and starting or finishing it.
    co_await asio::this_coro::throw_if_cancelled(false);
    // The owning key is built only here, past the hit path.
    const flight_key fk{cache::key(route.key()), caller.digest};
    // This session's worker: the leader's fetch runs here, on this worker's upstream pool,
    // and every waiter (this one too) is woken on its own worker (cache::flight::wait).
    const auto ex = co_await asio::this_coro::executor;
    IMAGEGATE_CHECK(runs_on_this_worker(ex), "a flight's waiters wait on their worker");
    const bool refresh = state == cache::freshness::stale_revalidate;
    if (!refresh) {
        // A fetch of this key failed under a second ago: a retrying client (SDKs retry 5xx
        // 2-10 times) gets the same answer, and the upstream no second call.
        if (const auto failed = self.failures.lookup(fk, now)) {
            self.stats.remembered_failures.fetch_add(1, std::memory_order_relaxed);
            if (cached && cached->classify(now) != cache::freshness::expired) {
                self.stats.stale_error.fetch_add(1, std::memory_order_relaxed);
                co_return serve_entry(cached, now, "stale", 0, false, false, "stale-if-error",
                                      cs_stale);
            }
            co_return gateway_error(failed->value.error, admission::refusal::none,
                                    shield::advise_retry(failed->remaining, false));
        }
    }
    auto joined = self.flights.join(fk);
    bool fetch = joined.leader;
    if (fetch && self.l2 &&
        (!caller.cred || self.proofs.is_proven(caller.digest, route.account(), now))) {
        // The fleet's L2 (and its fill lease) before the upstream; passthrough: only for a
        // caller who may read the account's cached entries, exactly as for L1.
        if (refresh) {
            start_fleet_refresh(ex, handler, fk, route.to_route(), caller.cred, joined.f);
            fetch = false;
        } else {
            // A named argument, never a braced temporary in the co_await expression: g++ 12
            // destroys that twice (STYLE: no braced initialisers in a co_await's arguments).
            fleet::l2_cache::want want{.image_id = std::string(route.image_id())};
            fleet::l2_cache::found l2 = co_await self.l2->before_fetch(fk.k, std::move(want), true);
            fetch = !l2.entry;
            if (l2.entry) {
                self.flights.finish(fk, joined.f, l2_outcome(std::move(l2.entry), l2.stored));
            }
        }
    }
    if (fetch) {
        // The first upstream call's slot is decided here, on this request's thread: a
        // refusal (429, truthful Retry-After) is answered at once, to every request of the
        // flight.
        const auto prio = refresh ? shield::priority::background : shield::priority::foreground;
        const admission::call c = first_attempt_call(self, fk, prio, caller.cred != nullptr, now);
        admission::ticket t;
        try {
            t = co_await self.gate->reserve(c);
        } catch (...) {
            // Nobody else would ever end this flight: its followers get the error too.
            fetch_outcome failed;
            failed.error = errc::internal_error;
            self.flights.finish(fk, joined.f, std::move(failed));
            throw;
        }
        // A background refresh in passthrough uses the credential of the request that
        // triggered it (which holds a proof for the account).
        start_or_refuse(ex, handler, fk, route.to_route(), prio, caller.cred, joined.f,
                        std::move(t));
    }

    if (refresh) {
        // RFC 5861 §3: answer the stale entry now; the refresh started (or joined) above
        // runs on its own.
        joined.f->leave();
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

    // The fetch ends first (queue wait + request_timeout <= coalesce_timeout): this deadline
    // only catches a gateway too slow to run it.
    const auto deadline = clock::now() + self.policy.coalesce_timeout;
    std::optional<fetch_outcome> got = co_await joined.f->wait(deadline);
    const auto done = self.policy.time->now();
    const bool collapsed = !joined.leader;
    if (!got) {
        const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none) {
            // The client hung up (http/server.cpp watches for it): it has left the flight,
            // and a fetch nobody waits for gives its slot back. Nobody reads this reply.
            self.stats.clients_gone.fetch_add(1, std::memory_order_relaxed);
            co_return reply{};
        }
        self.stats.coalesce_timeouts.fetch_add(1, std::memory_order_relaxed);
        if (cached && cached->classify(done) != cache::freshness::expired) {
            self.stats.stale_error.fetch_add(1, std::memory_order_relaxed);
            co_return serve_entry(cached, done, "stale", 0, false, collapsed, "stale-if-error",
                                  cs_stale);
        }
        co_return gateway_error(errc::single_flight_timeout);
    }
    if (got->error != errc{}) {
        // RFC 5861 §4: inside stale-if-error a failed refresh answers the stale entry.
        if (cached && cached->classify(done) != cache::freshness::expired) {
            self.stats.stale_error.fetch_add(1, std::memory_order_relaxed);
            co_return serve_entry(cached, done, "stale", 0, false, collapsed, "stale-if-error",
                                  cs_stale);
        }
        co_return gateway_error(got->error, got->refused, got->retry);
    }
    if (got->from_l2) {
        co_return serve_entry(got->entry, done, "miss", 0, got->stored, collapsed, "l2-hit",
                              cs_l2_hit);
    }
    if (got->from_cache) {
        co_return serve_entry(got->entry, done, {}, 0, false, collapsed, {}, cs_hit);
    }
    const std::string_view forward = cached ? "stale" : "miss";
    co_return serve_entry(got->entry, done, forward, got->upstream_status, got->stored, collapsed,
                          {},
                          collapsed     ? cs_collapsed
                          : got->stored ? cs_stored
                                        : cs_forwarded);
}

}  // namespace

reply image_handler::refusal(errc e) {
    reply r = gateway_error(e);
    if (e == errc::route_not_found) {
        r.route = "not_found";
    }
    return r;
}

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
        reply r = gateway_error(e);
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
            return gateway_error(errc::bad_request);
        }
    } else {
        switch (self.auth.check(req.headers, route.account())) {
        case authorizer::verdict::allowed: break;
        case authorizer::verdict::unauthorized: return unauthorized_reply(self.stats);
        case authorizer::verdict::forbidden: {
            self.stats.forbidden.fetch_add(1, std::memory_order_relaxed);
            return gateway_error(errc::forbidden);
        }
        }
    }
    const auto now = self.policy.time->now();
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

}  // namespace imagegate::gateway
