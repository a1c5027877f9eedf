// L2 lookups, the fill lease and L2 writes (purge and events: l2_purge.cpp).
#include "gateway/fleet/l2_cache.hpp"

#include "cache/sharded_cache.hpp"
#include "gateway/core/check.hpp"
#include "gateway/core/workers.hpp"
#include "gateway/fleet/events.hpp"
#include "gateway/fleet/redis_clients.hpp"
#include "gateway/redis/reply.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <simdjson.h>
#include <fmt/ostream.h>
#include <spdlog/spdlog.h>

// Keys print with control and non-ASCII bytes escaped (cache/key.hpp), safe for logs.
template <>
struct fmt::formatter<imagegate::cache::key> : fmt::ostream_formatter {};

namespace imagegate::fleet {
namespace {

using steady = std::chrono::steady_clock;
constexpr auto relaxed = std::memory_order_relaxed;

std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// GCC 12 keeps a thread_local's address across a coroutine suspension when inlined (see
// gateway/image/fetch.cpp): the parser is reached only through this non-inlined function.
[[gnu::noinline]] simdjson::ondemand::parser& thread_parser() {
    thread_local simdjson::ondemand::parser parser;
    return parser;
}

// Compare-and-delete: the lease is released only by its owner (the documented Redis lock
// release pattern).
const redis::script& release_script() {
    static const redis::script s(
        "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
        "else return 0 end");
    return s;
}

}  // namespace

/// What only one worker touches: the leases its flights hold, its writes in flight.
struct l2_cache::worker_state {
    std::unordered_set<std::string> held;  // lock keys
    std::size_t pending_writes = 0;
};

l2_cache::l2_cache(redis_clients& redis, cache::sharded_cache& l1, l2_options opts,
                   std::shared_ptr<spdlog::logger> log)
    : redis_(redis),
      l1_(l1),
      opts_(opts),
      log_(std::move(log)),
      prefix_(redis.key_prefix()),
      channel_(redis.key_prefix() + ":events"),
      instance_(random_instance_id()) {
    for (std::size_t i = 0; i < redis.size(); ++i) {
        workers_.push_back(std::make_unique<worker_state>());
    }
}

l2_cache::~l2_cache() = default;

std::string l2_cache::value_key(cache::key_view k) const {
    // Hash tag {account:id}: value and lease share a slot (cluster-safe). The account is hex
    // and the id canonical (unreserved characters and %XX): no brace, colon, space or CR/LF
    // can come from a request; no credential is part of a key.
    std::string out;
    out.reserve(prefix_.size() + 8 + k.account().size() + k.image_id().size());
    out.append(prefix_).append(":v1:{").append(k.account()).append(":").append(k.image_id());
    out += '}';
    return out;
}

std::string l2_cache::lock_key(cache::key_view k) const {
    std::string out;
    out.append(prefix_).append(":lock:{").append(k.account()).append(":").append(k.image_id());
    out += '}';
    return out;
}

l2_cache::worker_state& l2_cache::current() {
    const std::size_t i = workers::current_index();
    IMAGEGATE_CHECK(i < workers_.size(), "the L2 cache is used on an I/O worker");
    return *workers_[i];
}

asio::awaitable<l2_cache::get_result> l2_cache::get(const cache::key& k, const want& w, found& out,
                                                    bool recheck) {
    if (!redis_.breaker().allow()) {
        stats_.l2_skipped.fetch_add(1, relaxed);
        co_return get_result::error;
    }
    redis::client& c = redis_.for_current_worker();
    // Read before the GET: a purge that arrives meanwhile keeps the value out of L1.
    const std::uint64_t generation = l1_.generation(k.view());
    const auto start = steady::now();
    auto r = co_await c.exec(redis::make_command("GET", value_key(k)), start + redis_.op_timeout());
    redis_.record(r ? boost::system::error_code{} : r.error());
    if (!r) {
        stats_.l2_errors.fetch_add(1, relaxed);
        co_return get_result::error;
    }
    stats_.l2_latency.observe(steady::now() - start);
    if (r->is_nil()) {
        if (!recheck) {
            stats_.l2_misses.fetch_add(1, relaxed);
        }
        co_return get_result::miss;
    }
    l2_record rec;
    const std::int64_t now_ms = wall_ms();
    l2_refusal why = r->kind == redis::reply_kind::string
                         ? decode(r->text, k.view(), now_ms, opts_.limits, rec)
                         : l2_refusal::bad_magic;
    if (why == l2_refusal::none) {
        why = check_body(rec, w.image_id, thread_parser());
    }
    if (why != l2_refusal::none) {
        // Never served: the key is fetched again and the next fill overwrites the value.
        if (!recheck) {  // the same value refused a moment ago is counted and logged once
            stats_.l2_refused_invalid.fetch_add(1, relaxed);
            log_->warn("L2 value for {} refused: {}", k, to_string(why));
        }
        co_return get_result::miss;
    }
    const auto now = steady::now();
    out.entry = cache::make_entry(to_entry_params(rec, k.view(), now, now_ms));
    const cache::freshness state = out.entry->classify(now);
    if (state == cache::freshness::expired || (w.fresh_only && state != cache::freshness::fresh)) {
        out.entry.reset();
        if (!recheck) {
            stats_.l2_misses.fetch_add(1, relaxed);
        }
        co_return get_result::miss;
    }
    out.stored = l1_.put_if_current(out.entry, generation);
    stats_.l2_hits.fetch_add(1, relaxed);
    co_return get_result::hit;
}

asio::awaitable<bool> l2_cache::take_lease(const cache::key& k) {
    if (!redis_.breaker().allow()) {
        co_return false;
    }
    redis::client& c = redis_.for_current_worker();
    auto r = co_await c.exec(
        redis::make_command("SET", lock_key(k), instance_, "NX", "PX", opts_.lease_timeout.count()),
        steady::now() + redis_.op_timeout());
    redis_.record(r ? boost::system::error_code{} : r.error());
    co_return r && r->is_status("OK");
}

asio::awaitable<l2_cache::found> l2_cache::before_fetch(cache::key k, want w, bool lease) {
    found out;
    try {
        const get_result g = co_await get(k, w, out);
        if (g != get_result::miss || !lease) {
            co_return out;  // a hit, or Redis unusable: fetch without a lease
        }
        const lease_result l = co_await claim(k, w, out);
        if (l != lease_result::lost) {
            co_return out;  // won (fetch), or filled meanwhile (a hit)
        }
        if (!redis_.breaker().allow()) {
            co_return out;
        }
        found waited = co_await wait_for_fill(k, std::move(w));
        co_return waited;
    } catch (const std::exception& e) {
        log_->error("L2 lookup of {} failed: {}", k, e.what());
    }
    co_return found{};
}

asio::awaitable<l2_cache::lease_result> l2_cache::claim(const cache::key& k, const want& w,
                                                        found& out) {
    if (!co_await take_lease(k)) {
        co_return lease_result::lost;
    }
    current().held.insert(lock_key(k));
    found again;
    const get_result g = co_await get(k, w, again, true);
    if (g != get_result::hit) {
        stats_.lease_wins.fetch_add(1, relaxed);
        co_return lease_result::won;  // a miss (or Redis trouble): this flight fetches
    }
    stats_.lease_late_fills.fetch_add(1, relaxed);
    after_fetch(k, nullptr);  // gives the lease back (and wakes waiters: they find the value)
    out = std::move(again);
    co_return lease_result::filled;
}

asio::awaitable<l2_cache::found> l2_cache::wait_for_fill(cache::key k, want what) {
    stats_.lease_waits.fetch_add(1, relaxed);
    const auto ex = co_await asio::this_coro::executor;
    const auto w = std::make_shared<fill_wait>(ex);
    const fill_waiters::registration reg(waiters_, std::string(k.joined()), w);
    // The holder's lease ends by then at the latest (it was taken before our attempt).
    const auto end = steady::now() + opts_.lease_timeout;
    found out;
    while (steady::now() < end) {
        const asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
        if (cs.cancelled() != asio::cancellation_type::none) {
            co_return found{};  // the client left; the flight decides what happens next
        }
        if (!w->fired) {
            w->timer.expires_at(std::min(steady::now() + opts_.poll_interval, end));
            co_await w->timer.async_wait(use_nothrow);
        }
        w->fired = false;
        const get_result g = co_await get(k, what, out);
        if (g == get_result::hit) {
            stats_.lease_wait_hits.fetch_add(1, relaxed);
            co_return out;
        }
        if (g == get_result::error) {
            co_return found{};  // Redis went away: fetch locally
        }
        // The holder released the lease without a value (its fetch failed or was refused),
        // or it died and the lease expired: whoever takes it now fetches.
        const lease_result l = co_await claim(k, what, out);
        if (l == lease_result::filled) {
            stats_.lease_wait_hits.fetch_add(1, relaxed);
            co_return out;
        }
        if (l == lease_result::won) {
            co_return found{};
        }
    }
    stats_.lease_timeouts.fetch_add(1, relaxed);
    co_return found{};
}

/// Counts one write-back as pending until the last of its commands has its reply (or failed).
/// (Its worker's state, not current(): frames destroyed at shutdown end it on another thread.)
struct l2_cache::write_back_done {
    std::shared_ptr<l2_cache> self;
    worker_state* ws;
    write_back_done(std::shared_ptr<l2_cache> s, worker_state* w) : self(std::move(s)), ws(w) {}
    write_back_done(const write_back_done&) = delete;
    write_back_done& operator=(const write_back_done&) = delete;
    ~write_back_done() { --ws->pending_writes; }
};

asio::awaitable<void> l2_cache::send(std::shared_ptr<write_back_done> done, redis::command cmd,
                                     bool is_value) {
    l2_cache& self = *done->self;
    auto r = co_await self.redis_.for_current_worker().exec(
        std::move(cmd), steady::now() + self.redis_.op_timeout());
    self.redis_.record(r ? boost::system::error_code{} : r.error());
    if (is_value && (!r || !r->is_status("OK"))) {
        self.stats_.l2_write_errors.fetch_add(1, relaxed);
    }
}

asio::awaitable<void> l2_cache::release(std::shared_ptr<write_back_done> done, cache::key k) {
    l2_cache& self = *done->self;
    std::vector<std::string> keys{self.lock_key(k)};
    std::vector<std::string> args{self.instance_};
    auto r = co_await self.redis_.for_current_worker().eval_script(
        release_script(), std::move(keys), std::move(args),
        steady::now() + self.redis_.op_timeout());
    self.redis_.record(r ? boost::system::error_code{} : r.error());
}

void l2_cache::write_back(const cache::key& k, std::string value, std::int64_t px, bool held) {
    // The commands go out pipelined, in this order, in one write on the worker's connection
    // (each coroutine below queues its command before it first suspends), before the waiters
    // of this flight are answered: Redis runs them in order, so the value exists before the
    // lease is released and before "filled" reaches the other instances (an EVALSHA that
    // meets NOSCRIPT releases the lease one round trip later, after the event: waiters then
    // find the value, or see the lease taken and poll). Awaited one after another, each
    // reply waited behind this worker's fan-out of answers: in the fleet benchmark's herds
    // the L2 instances answered 11-13 ms after the fetching one, 3-6 ms now
    // (tests/bench/PERFORMANCE.md, "Fleet tier").
    auto done = std::make_shared<write_back_done>(shared_from_this(), &current());
    const auto ex = redis_.for_current_worker().get_executor();
    if (!value.empty()) {
        // One SET with PX: the value never exists without its expiry.
        stats_.l2_writes.fetch_add(1, relaxed);
        asio::co_spawn(
            ex,
            send(done, redis::make_command("SET", value_key(k), std::move(value), "PX", px), true),
            asio::detached);
    }
    if (held) {
        asio::co_spawn(ex, release(done, cache::key(k.view())), asio::detached);
        const std::string payload = format_event({.kind = event_kind::filled,
                                                  .origin = instance_,
                                                  .account = std::string(k.account()),
                                                  .id = std::string(k.image_id())});
        asio::co_spawn(ex, send(done, redis::make_command("PUBLISH", channel_, payload), false),
                       asio::detached);
    }
}

void l2_cache::after_fetch(const cache::key& k, std::shared_ptr<const cache::entry> stored) {
    worker_state& ws = current();
    const bool held = ws.held.erase(lock_key(k)) > 0;
    if (!stored && !held) {
        return;
    }
    if (ws.pending_writes >= opts_.max_pending_writes || !redis_.breaker().allow()) {
        // The lease expires on its own; the next miss refetches.
        stats_.l2_writes_dropped.fetch_add(1, relaxed);
        return;
    }
    std::string value;
    std::int64_t px = 0;
    if (stored) {
        const std::int64_t now_ms = wall_ms();
        const l2_record rec = to_record(*stored, steady::now(), now_ms);
        px = remaining_ms(rec, now_ms);
        if (px > 0) {
            value = encode(rec);
        }
    }
    ++ws.pending_writes;
    write_back(k, std::move(value), px, held);
}

}  // namespace imagegate::fleet
