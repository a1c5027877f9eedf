#include "gateway/image_handler.hpp"

#include "cache/entry.hpp"
#include "cache/key.hpp"
#include "cache/sharded_cache.hpp"
#include "cache/single_flight.hpp"
#include "gateway/metrics.hpp"
#include "gateway/route.hpp"
#include "gateway/upstream/client.hpp"
#include "gateway/validate/image_record.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/strand.hpp>
#include <fmt/ostream.h>
#include <spdlog/spdlog.h>

#include <simdjson.h>

#include <cstdio>

// Keys print with control and non-ASCII bytes escaped (cache/key.hpp), safe for logs.
template <>
struct fmt::formatter<imagegate::cache::key> : fmt::ostream_formatter {};

namespace imagegate::gateway {
namespace {

using clock = std::chrono::steady_clock;
using entry_ptr = std::shared_ptr<const cache::entry>;

/// What one upstream fetch produced; shared by every request that waited for it.
struct fetch_outcome {
    /// A servable answer: a validated record or "not found" (stored unless `stored` is false),
    /// or an upstream 4xx passed through (never stored).
    entry_ptr entry;
    bool stored = false;
    unsigned upstream_status = 0;
    /// Retry-After of a passed-through 429.
    std::string retry_after;
    /// Set when there is no servable answer.
    errc error{};
};

// Cache-Status values for the access log (RFC 9211 parameters, abbreviated).
constexpr std::string_view cs_hit = "hit";
constexpr std::string_view cs_stored = "fwd=miss; stored";
constexpr std::string_view cs_forwarded = "fwd=miss";
constexpr std::string_view cs_stale = "fwd=stale";
constexpr std::string_view cs_collapsed = "collapsed";
constexpr std::string_view cs_error = "error";

void append_number(std::string& out, long long v) {
    char buf[24];
    const int n = std::snprintf(buf, sizeof buf, "%lld", v);
    out.append(buf, static_cast<std::size_t>(n));
}

// Per-request headers after an entry's prepared head: Age (RFC 9111 §5.1) and Cache-Status
// (RFC 9211) with the cache name `imagegate`.
void append_entry_headers(std::string& out, const cache::entry& e, clock::time_point now,
                          std::string_view forward, unsigned fwd_status, bool stored,
                          bool collapsed, std::string_view detail) {
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

reply serve_entry(const entry_ptr& e, clock::time_point now, std::string_view forward,
                  unsigned fwd_status, bool stored, bool collapsed, std::string_view detail) {
    reply r;
    r.status = e->status();
    r.prepared_head = e->head();
    r.head.reserve(96);
    append_entry_headers(r.head, *e, now, forward, fwd_status, stored, collapsed, detail);
    r.borrow_body(e->body());
    r.owner = e;
    r.route = "image";
    return r;
}

reply gateway_error(errc e, std::string_view detail, std::string_view extra_headers = {}) {
    std::string extra = "Age: 0\r\nCache-Status: imagegate; fwd=miss; detail=";
    extra += detail;
    extra += "\r\n";
    extra += extra_headers;
    reply r = make_error_reply(e, extra);
    r.route = "image";
    r.cache_status = cs_error;
    return r;
}

}  // namespace

struct image_handler::impl : std::enable_shared_from_this<impl> {
    cache::sharded_cache& cache;
    upstream::client& client;
    image_policy policy;
    asio::any_io_executor fetch_executor;
    std::shared_ptr<spdlog::logger> log;
    image_stats stats;
    cache::single_flight<cache::key, fetch_outcome, cache::key_hash> flights;

    impl(cache::sharded_cache& c, upstream::client& cl, image_policy p, asio::any_io_executor ex,
         std::shared_ptr<spdlog::logger> l)
        : cache(c), client(cl), policy(p), fetch_executor(std::move(ex)), log(std::move(l)) {}

    fetch_outcome classify(const cache::key& k, const image_route& route,
                           upstream::response& resp, clock::time_point received);
};

namespace {

// The fetch of one key: runs as its own task, owned by the flight, not by any client.
asio::awaitable<void> run_fetch(std::shared_ptr<image_handler::impl> self, cache::key k,
                                image_route route,
                                std::shared_ptr<cache::flight<fetch_outcome>> f) {
    std::string target = "/accounts/" + route.account + "/images/v1/" + route.canonical_id;
    const auto deadline = clock::now() + self->policy.request_timeout;
    auto res = co_await self->client.fetch(std::move(target), deadline);
    fetch_outcome out;
    if (!res) {
        const auto ec = res.error();
        out.error = ec.category() == imagegate_category() ? static_cast<errc>(ec.value())
                                                          : errc::upstream_protocol_error;
        self->stats.upstream_errors.fetch_add(1, std::memory_order_relaxed);
        self->log->warn("upstream fetch of {} failed: {}:{} {}", k, ec.category().name(),
                        ec.value(), ec.message());
    } else {
        out = self->classify(k, route, *res, clock::now());
    }
    self->flights.finish(k, f, std::move(out));
}

// A fetch task that throws is a bug; its waiters must still be answered.
struct fetch_done {
    std::shared_ptr<image_handler::impl> self;
    cache::key k;
    std::shared_ptr<cache::flight<fetch_outcome>> f;
    void operator()(const std::exception_ptr& ep) {
        if (!ep) {
            return;
        }
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            self->log->error("fetch of {} threw: {}", k, e.what());
        } catch (...) {
            self->log->error("fetch of {} threw", k);
        }
        fetch_outcome out;
        out.error = errc::internal_error;
        self->flights.finish(k, f, std::move(out));
    }
};

}  // namespace

fetch_outcome image_handler::impl::classify(const cache::key& k, const image_route& route,
                                            upstream::response& resp,
                                            clock::time_point received) {
    // One parser per thread, reused: it keeps its buffers sized for the largest record.
    thread_local simdjson::ondemand::parser parser;
    fetch_outcome out;
    out.upstream_status = resp.status;
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
        out.stored = cache.put(out.entry);
        if (out.stored) {
            stats.stored.fetch_add(1, std::memory_order_relaxed);
        }
    };
    if (resp.status == 200) {
        const auto v = validate::validate_image(resp.body, resp.body.capacity(), route.image_id,
                                                parser);
        if (!v.ok()) {
            stats.invalid.fetch_add(1, std::memory_order_relaxed);
            log->warn("upstream record for {} rejected at '{}': {}", k, v.failure->pointer,
                      v.failure->reason);
            out.error = errc::invalid_upstream_json;
            return out;
        }
        const auto ttl = v.draft ? std::min(policy.draft_ttl, policy.ttl) : policy.ttl;
        // A draft is an upload in progress: never answer it stale.
        const auto swr = v.draft ? clock::duration::zero() : clock::duration(policy.stale_while_revalidate);
        const auto sie = v.draft ? clock::duration::zero() : clock::duration(policy.stale_if_error);
        store(200, v.draft ? cache::entry_kind::draft : cache::entry_kind::positive, ttl, swr, sie);
        return out;
    }
    if (resp.status >= 400 && resp.status < 500) {
        const auto env = validate::validate_error_envelope(resp.body, resp.body.capacity(), parser);
        if (!env.ok()) {
            stats.invalid.fetch_add(1, std::memory_order_relaxed);
            log->warn("upstream {} answer for {} rejected at '{}': {}", resp.status, k,
                      env.failure->pointer, env.failure->reason);
            out.error = errc::invalid_upstream_json;
            return out;
        }
        if (resp.status == 404 && env.code == 5404) {
            // "Image not found" is an answer too: stored briefly so a flood of requests for a
            // missing id does not become a flood upstream. Never served stale.
            store(404, cache::entry_kind::negative, policy.negative_ttl, {}, {});
            return out;
        }
        // 401, 403, 429 and other 4xx: the upstream's answer, passed through, never stored.
        stats.passthrough.fetch_add(1, std::memory_order_relaxed);
        out.entry = cache::make_entry({.key = k,
                                       .status = resp.status,
                                       .kind = cache::entry_kind::negative,
                                       .body = resp.body,
                                       .stored_at = received});
        if (resp.status == 429) {
            out.retry_after = resp.retry_after;
        }
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
                             image_policy policy, asio::any_io_executor fetch_executor,
                             std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_shared<impl>(cache, client, policy, std::move(fetch_executor),
                                   std::move(log))) {}

image_handler::~image_handler() = default;

const image_stats& image_handler::stats() const noexcept {
    return impl_->stats;
}

asio::awaitable<reply> image_handler::handle(request req) {
    route_result route = route_image(req.target);
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
        co_return r;
    }

    auto& self = *impl_;
    cache::key k(route.image.account, route.image.canonical_id);
    const auto now = clock::now();
    entry_ptr cached = self.cache.get(k, now);
    auto state = cached ? cached->classify(now) : cache::freshness::expired;
    if (state == cache::freshness::fresh) {
        self.stats.hits.fetch_add(1, std::memory_order_relaxed);
        reply r = serve_entry(cached, now, {}, 0, false, false, {});
        r.cache_status = cs_hit;
        co_return r;
    }

    auto joined = self.flights.join(k);
    if (joined.leader) {
        asio::co_spawn(asio::make_strand(self.fetch_executor),
                       run_fetch(impl_, k, route.image, joined.f),
                       fetch_done{impl_, k, joined.f});
    }

    if (state == cache::freshness::stale_revalidate) {
        // RFC 5861 §3: answer the stale entry now; the refresh started (or joined) above
        // runs on its own.
        reply r = serve_entry(cached, now, "stale", 0, false, false, "stale-while-revalidate");
        r.cache_status = cs_stale;
        co_return r;
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
            reply r = serve_entry(cached, done, "stale", 0, false, collapsed, "stale-if-error");
            r.cache_status = cs_stale;
            co_return r;
        }
        co_return gateway_error(errc::single_flight_timeout, "single_flight_timeout");
    }
    if (got->error != errc{}) {
        // RFC 5861 §4: inside stale-if-error a failed refresh answers the stale entry.
        if (cached && cached->classify(done) != cache::freshness::expired) {
            reply r = serve_entry(cached, done, "stale", 0, false, collapsed, "stale-if-error");
            r.cache_status = cs_stale;
            co_return r;
        }
        co_return gateway_error(got->error, to_string(got->error));
    }
    const std::string_view forward = cached ? "stale" : "miss";
    reply r = serve_entry(got->entry, done, forward, got->upstream_status, got->stored, collapsed,
                          {});
    if (!got->retry_after.empty()) {
        r.head += "Retry-After: ";
        r.head += got->retry_after;
        r.head += "\r\n";
    }
    r.cache_status = collapsed ? cs_collapsed : got->stored ? cs_stored : cs_forwarded;
    co_return r;
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
}

}  // namespace imagegate::gateway
