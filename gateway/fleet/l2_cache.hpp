// The fleet's shared cache on Redis: looked up on an L1 miss before the upstream (with the
// cross-instance fill lease), written after a validated upstream answer, purged and kept
// coherent through the events channel. Everything degrades to "miss" when Redis is not there.
#pragma once

#include "cache/entry.hpp"
#include "cache/key.hpp"
#include "gateway/core/net.hpp"
#include "gateway/fleet/fill_waiters.hpp"
#include "gateway/fleet/l2_codec.hpp"
#include "gateway/fleet/stats.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace spdlog {
class logger;
}

namespace imagegate::cache {
class sharded_cache;
}

namespace imagegate::redis {
class command;
}

namespace imagegate::fleet {

class redis_clients;

struct l2_options {
    /// `[fleet] lease_timeout`: the fill lease's PX, and the longest a loser waits.
    std::chrono::milliseconds lease_timeout{5000};
    /// A loser polls L2 this often when no "filled" event arrives.
    std::chrono::milliseconds poll_interval{50};
    l2_limits limits{};
    /// Writes in flight per worker; beyond it a write is dropped (the next miss refetches).
    std::size_t max_pending_writes = 256;
};

/// Owned by the composition root (shared_ptr: background writes hold it). Lookups, writes and
/// purges run on I/O workers (each uses its worker's client); the event handlers on the
/// subscriber's executor. Thread-safety: as stated per member.
class l2_cache : public std::enable_shared_from_this<l2_cache> {
public:
    l2_cache(redis_clients& redis, cache::sharded_cache& l1, l2_options opts,
             std::shared_ptr<spdlog::logger> log);
    ~l2_cache();

    /// What before_fetch found.
    struct found {
        std::shared_ptr<const cache::entry> entry;  ///< null: fetch upstream
        bool stored = false;                        ///< entry was put in L1
    };

    /// What a lookup wants.
    struct want {
        std::string image_id;     ///< the decoded id the body is validated against
        bool fresh_only = false;  ///< a value past its freshness (stale) counts as a miss
    };

    /// On the worker of a local flight's leader, right before it asks for an upstream slot:
    /// GET the key; on a miss take the key's fill lease, or wait (up to lease_timeout) for the
    /// instance holding it to fill L2. `lease`: false skips the lease (GET only). A background
    /// refresh of a stale L1 entry asks `fresh_only`: a value as stale as its own is no
    /// answer, one another instance refreshed is (one refresh per key for the fleet). Never
    /// throws; any Redis trouble is a miss.
    asio::awaitable<found> before_fetch(cache::key k, want w, bool lease);

    /// On the same worker when that flight's fetch ended (or was refused or abandoned):
    /// writes `stored` (an entry put in L1 from a validated upstream answer) to L2, releases
    /// the fill lease if this flight held it and publishes "filled". In the background: the
    /// clients are already answered.
    void after_fetch(const cache::key& k, std::shared_ptr<const cache::entry> stored);

    /// One entry to write_batch: put in L1 (put_if_current returned true) under `generation`,
    /// the L1 generation of its key read before the upstream call that brought it.
    struct batch_entry {
        std::shared_ptr<const cache::entry> entry;
        std::uint64_t generation = 0;
    };
    /// What write_batch did with its entries (written + failed + skipped = entries).
    struct batch_outcome {
        std::uint64_t written = 0;  ///< SET … PX answered OK
        std::uint64_t failed = 0;   ///< no OK (error reply, timeout, Redis down), breaker open,
                                    ///< or not sent by the deadline
        std::uint64_t skipped = 0;  ///< purged in L1 since (its generation moved), or expired
    };
    /// Commands of one write_batch waiting for their reply at once, on the worker's connection
    /// that the request path shares (a GET queues behind at most this many SETs).
    static constexpr std::size_t max_batch_in_flight = 32;

    /// On an I/O worker: writes each entry to L2 as after_fetch does (the same record, one
    /// `SET <value key> <value> PX <remaining life>`; never SET then EXPIRE), pipelined on this
    /// worker's connection with at most max_batch_in_flight commands in flight. Each command
    /// waits at most op_timeout; none is sent after `deadline` or while the breaker is open
    /// (those count as failed, and in imagegate_fleet_l2_writes_dropped_total). An entry whose
    /// key's L1 generation moved (a purge, a write, a flush since it was stored) is not written:
    /// the purge fence holds for L2 too. Returns when every command has its reply or failed.
    /// Never throws. For warm jobs (gateway/warm), which write a listing page at a time.
    asio::awaitable<batch_outcome> write_batch(std::vector<batch_entry> entries,
                                               std::chrono::steady_clock::time_point deadline);

    /// On an I/O worker, after the local purge: deletes the L2 key (or every key of the
    /// account when `id` is empty) and publishes the purge. False when it could not be
    /// broadcast (Redis down or slow): the caller answers 503.
    asio::awaitable<bool> purge(std::string account, std::string id);

    /// Subscriber handlers (its executor): an event; every channel (re)confirmed.
    void on_message(std::string_view channel, std::string_view payload);
    void on_subscribed();

    const fleet_stats& stats() const noexcept { return stats_; }
    /// This process's random id (event origin, lease owner).
    const std::string& instance_id() const noexcept { return instance_; }

    /// `<prefix>:v1:{account:id}`, `<prefix>:lock:{account:id}`, `<prefix>:events`.
    std::string value_key(cache::key_view k) const;
    std::string lock_key(cache::key_view k) const;

private:
    struct worker_state;
    enum class get_result : std::uint8_t { hit, miss, error };

    /// `recheck`: a second look by the same lookup, whose miss (or refusal) was counted already.
    asio::awaitable<get_result> get(const cache::key& k, const want& w, found& out,
                                    bool recheck = false);
    asio::awaitable<bool> take_lease(const cache::key& k);
    /// Takes the fill lease; when won, GETs once more: the previous holder may have written
    /// the value and released the lease between this flight's GET and its SET NX (a herd then
    /// fetched twice). The value is written before the lease is released, so a lease won
    /// after that release always finds it. A hit gives the lease back and fills `out`.
    enum class lease_result : std::uint8_t { won, lost, filled };
    asio::awaitable<lease_result> claim(const cache::key& k, const want& w, found& out);
    asio::awaitable<found> wait_for_fill(cache::key k, want what);
    worker_state& current();
    /// SET PX of the value (when not empty), then (when `held`) the lease release and the
    /// "filled" event: pipelined, in the background.
    void write_back(const cache::key& k, std::string value, std::int64_t px, bool held);
    struct write_back_done;
    static asio::awaitable<void> send(std::shared_ptr<write_back_done> done, redis::command cmd,
                                      bool is_value);
    static asio::awaitable<void> release(std::shared_ptr<write_back_done> done, cache::key k);

    redis_clients& redis_;
    cache::sharded_cache& l1_;
    l2_options opts_;
    std::shared_ptr<spdlog::logger> log_;
    std::string prefix_;
    std::string channel_;
    std::string instance_;
    std::vector<std::unique_ptr<worker_state>> workers_;
    fill_waiters waiters_;
    fleet_stats stats_;
};

}  // namespace imagegate::fleet
