// The mapping between L2 records (wall clock) and L1 entries (steady clock): apart from the
// byte codec so the decoder builds (and fuzzes) without the cache library.
#include "gateway/fleet/l2_codec.hpp"

#include <algorithm>
#include <chrono>

namespace imagegate::fleet {

l2_record to_record(const cache::entry& e, cache::time_point now, std::int64_t now_ms) {
    using std::chrono::duration_cast;
    using std::chrono::milliseconds;
    const auto offset = [&](cache::time_point t) {
        return static_cast<std::uint32_t>(
            std::max<std::int64_t>(0, duration_cast<milliseconds>(t - e.stored_at()).count()));
    };
    l2_record r;
    r.status = static_cast<std::uint16_t>(e.status());
    r.kind = e.kind();
    r.stored_ms = now_ms - duration_cast<milliseconds>(now - e.stored_at()).count();
    r.fresh_ms = offset(e.fresh_until());
    r.swr_ms = std::max(r.fresh_ms, offset(e.stale_while_revalidate_until()));
    r.sie_ms = std::max(r.swr_ms, offset(e.stale_if_error_until()));
    r.account.assign(e.key().account());
    r.id.assign(e.key().image_id());
    r.body.assign(e.body());
    return r;
}

cache::entry_params to_entry_params(const l2_record& r, cache::key_view k, cache::time_point now,
                                    std::int64_t now_ms) {
    using std::chrono::milliseconds;
    const std::int64_t age_ms = std::max<std::int64_t>(0, now_ms - r.stored_ms);
    return {.key = cache::key(k),
            .status = r.status,
            .kind = r.kind,
            .body = r.body,
            .stored_at = now - milliseconds(age_ms),
            .ttl = milliseconds(r.fresh_ms),
            .swr = milliseconds(r.swr_ms - r.fresh_ms),
            .sie = milliseconds(r.sie_ms - r.fresh_ms)};
}

}  // namespace imagegate::fleet
