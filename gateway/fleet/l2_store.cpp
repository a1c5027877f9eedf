// L2 writes of whole batches (a warm job's listing page): pipelined on the worker's
// connection, bounded in flight, behind the breaker, the deadlines and the purge fence.
#include "cache/sharded_cache.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/fleet/redis_clients.hpp"
#include "gateway/redis/reply.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>

namespace imagegate::fleet {
namespace {

using steady = std::chrono::steady_clock;
constexpr auto relaxed = std::memory_order_relaxed;

std::int64_t wall_now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// One write_batch on one worker: its entries, the next to send, its outcome and the caller's
// wake-up. Touched only on that worker (no lock). The references are the l2_cache's, which
// `owner` keeps alive.
struct batch {
    batch(asio::any_io_executor ex, std::shared_ptr<l2_cache> o, redis_clients& r,
          cache::sharded_cache& c, fleet_stats& s, std::vector<l2_cache::batch_entry> e,
          steady::time_point d)
        : owner(std::move(o)),
          redis(r),
          l1(c),
          stats(s),
          entries(std::move(e)),
          deadline(d),
          done(std::move(ex)) {}

    std::shared_ptr<l2_cache> owner;
    redis_clients& redis;
    cache::sharded_cache& l1;
    fleet_stats& stats;
    std::vector<l2_cache::batch_entry> entries;
    steady::time_point deadline;
    std::size_t next = 0;   // the next entry a lane takes
    std::size_t lanes = 0;  // lanes still running
    l2_cache::batch_outcome out;
    asio::steady_timer done;  // the caller waits on it; the last lane cancels it
};

// One lane: takes the next entry and writes it, until none is left. A batch runs up to
// max_batch_in_flight lanes at once on one connection: their commands go out pipelined.
asio::awaitable<void> write_lane(std::shared_ptr<batch> b) {
    redis::client& c = b->redis.for_current_worker();
    while (b->next < b->entries.size()) {
        l2_cache::batch_entry item = std::move(b->entries[b->next++]);
        if (steady::now() >= b->deadline || !b->redis.breaker().allow()) {
            b->stats.l2_writes_dropped.fetch_add(1, relaxed);
            ++b->out.failed;
            continue;
        }
        const cache::entry& e = *item.entry;
        if (b->l1.generation(e.key()) != item.generation) {
            ++b->out.skipped;  // purged (or written through the gateway) since it was stored
            continue;
        }
        const std::int64_t now_ms = wall_now_ms();
        const l2_record rec = to_record(e, steady::now(), now_ms);
        const std::int64_t px = remaining_ms(rec, now_ms);
        if (px <= 0) {
            ++b->out.skipped;
            continue;
        }
        // One SET with PX: the value never exists without its expiry.
        b->stats.l2_writes.fetch_add(1, relaxed);
        auto r = co_await c.exec(
            redis::make_command("SET", b->owner->value_key(e.key()), encode(rec), "PX", px),
            b->deadline);
        b->redis.record(r ? boost::system::error_code{} : r.error());
        if (r && r->is_status("OK")) {
            ++b->out.written;
        } else {
            b->stats.l2_write_errors.fetch_add(1, relaxed);
            ++b->out.failed;
        }
    }
}

// A lane's end, whatever it was: the last one wakes the caller.
struct lane_done {
    std::shared_ptr<batch> b;
    void operator()(const std::exception_ptr&) const {
        if (--b->lanes == 0) {
            b->done.cancel();
        }
    }
};

}  // namespace

asio::awaitable<l2_cache::batch_outcome> l2_cache::write_batch(std::vector<batch_entry> entries,
                                                               steady::time_point deadline) {
    if (entries.empty()) {
        co_return batch_outcome{};
    }
    const auto ex = co_await asio::this_coro::executor;
    auto b = std::make_shared<batch>(ex, shared_from_this(), redis_, l1_, stats_,
                                     std::move(entries), deadline);
    b->done.expires_at(steady::time_point::max());
    const std::size_t lanes = std::min(max_batch_in_flight, b->entries.size());
    b->lanes = lanes;
    for (std::size_t i = 0; i < lanes; ++i) {
        asio::co_spawn(ex, write_lane(b), lane_done{b});
    }
    // A lane may end before this point (co_spawn can start it inline, and with the breaker
    // open it never suspends); nothing runs between this check and the wait.
    if (b->lanes > 0) {
        co_await b->done.async_wait(use_nothrow);
    }
    // An entry a lane had taken when it threw was neither written nor counted.
    const std::uint64_t counted = b->out.written + b->out.failed + b->out.skipped;
    b->out.failed += b->entries.size() - std::min<std::uint64_t>(counted, b->entries.size());
    co_return b->out;
}

}  // namespace imagegate::fleet
