// The fleet's coherence: purges deleted from L2 and broadcast, events from other instances
// applied to L1, and the L1 flush on every (re)subscription.
#include "cache/sharded_cache.hpp"
#include "gateway/fleet/events.hpp"
#include "gateway/fleet/l2_cache.hpp"
#include "gateway/fleet/redis_clients.hpp"
#include "gateway/redis/reply.hpp"

#include <spdlog/spdlog.h>

namespace imagegate::fleet {
namespace {

using steady = std::chrono::steady_clock;
constexpr auto relaxed = std::memory_order_relaxed;
/// An account purge walks the keyspace with SCAN; it gives up (503) past this.
constexpr auto max_account_scan = std::chrono::seconds(5);

}  // namespace

asio::awaitable<bool> l2_cache::purge(std::string account, std::string id) {
    if (!redis_.breaker().allow()) {
        stats_.purge_failed.fetch_add(1, relaxed);
        co_return false;
    }
    redis::client& c = redis_.for_current_worker();
    const auto timeout = redis_.op_timeout();
    bool ok = true;
    if (!id.empty()) {
        auto r = co_await c.exec(redis::make_command("UNLINK", value_key({account, id})),
                                 steady::now() + timeout);
        redis_.record(r ? boost::system::error_code{} : r.error());
        ok = r && !r->is_error();
    } else {
        // Every value key of the account: `<prefix>:v1:{<account>:*`. The prefix has no glob
        // characters (config check) and the account is hex.
        const std::string pattern = prefix_ + ":v1:{" + account + ":*";
        const auto give_up = steady::now() + max_account_scan;
        std::string cursor = "0";
        do {
            auto r = co_await c.exec(
                redis::make_command("SCAN", cursor, "MATCH", pattern, "COUNT", 1000),
                steady::now() + timeout);
            redis_.record(r ? boost::system::error_code{} : r.error());
            if (!r || r->kind != redis::reply_kind::array || r->elements.size() != 2 ||
                r->elements[0].kind != redis::reply_kind::string ||
                r->elements[1].kind != redis::reply_kind::array) {
                ok = false;
                break;
            }
            cursor = r->elements[0].text;
            redis::command del("UNLINK");
            for (const auto& key : r->elements[1].elements) {
                if (key.kind == redis::reply_kind::string) {
                    del.arg(key.text);
                }
            }
            if (del.args().size() > 1) {
                auto d = co_await c.exec(std::move(del), steady::now() + timeout);
                redis_.record(d ? boost::system::error_code{} : d.error());
                if (!d || d->is_error()) {
                    ok = false;
                    break;
                }
            }
            if (steady::now() > give_up) {
                ok = false;
                break;
            }
        } while (cursor != "0");
    }
    if (ok) {
        const std::string payload =
            format_event({.kind = id.empty() ? event_kind::purge_account : event_kind::purge_image,
                          .origin = instance_,
                          .account = account,
                          .id = id});
        auto p = co_await c.exec(redis::make_command("PUBLISH", channel_, payload),
                                 steady::now() + timeout);
        redis_.record(p ? boost::system::error_code{} : p.error());
        ok = p && p->kind == redis::reply_kind::integer;
    }
    (ok ? stats_.purge_sent : stats_.purge_failed).fetch_add(1, relaxed);
    if (!ok) {
        log_->warn("purge of account {} could not be broadcast: Redis unreachable or slow",
                   account);
    }
    co_return ok;
}

void l2_cache::on_message(std::string_view channel, std::string_view payload) {
    if (channel != channel_) {
        return;
    }
    const auto e = parse_event(payload);
    if (!e) {
        // Anyone who can PUBLISH could flood the log: counted, not logged.
        stats_.events_refused.fetch_add(1, relaxed);
        return;
    }
    switch (e->kind) {
    case event_kind::purge_image:
        if (e->origin != instance_) {
            l1_.erase(cache::key_view(e->account, e->id));
            stats_.purge_received.fetch_add(1, relaxed);
        }
        return;
    case event_kind::purge_account:
        if (e->origin != instance_) {
            l1_.erase_account(e->account);
            stats_.purge_received.fetch_add(1, relaxed);
        }
        return;
    case event_kind::filled:
        stats_.fills_received.fetch_add(1, relaxed);
        waiters_.notify(cache::key(e->account, e->id).joined());
        return;
    }
}

void l2_cache::on_subscribed() {
    // Pub/sub is at-most-once: whatever was published while this instance was not subscribed
    // is lost, so nothing in L1 can be trusted to be unpurged. Flush it.
    l1_.clear();
    stats_.l1_flushes.fetch_add(1, relaxed);
    log_->info("fleet events subscribed: L1 flushed (purges may have been missed)");
}

}  // namespace imagegate::fleet
