// The L2 value format (pure): what an L1 entry needs, in a versioned binary envelope that
// Redis stores under `<prefix>:v1:{account:id}`, and the strict decoder that treats every
// byte read back from Redis as hostile.
#pragma once

#include "cache/entry.hpp"
#include "cache/key.hpp"

#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace imagegate::fleet {

/// The envelope's version. A reader refuses any other (a newer writer's entries are misses
/// until every instance runs the new version; the key's `v1` segment changes with it).
inline constexpr std::uint8_t l2_version = 1;
/// Fixed header: magic "IGL2", version, kind, status, stored (unix ms), three window offsets,
/// three lengths; all little-endian.
inline constexpr std::size_t l2_header_bytes = 36;

/// One entry as the fleet shares it: wall-clock times, since instances share no steady clock.
struct l2_record {
    std::uint16_t status = 200;  ///< 200 (positive, draft) or 404 (negative, code 5404)
    cache::entry_kind kind = cache::entry_kind::positive;
    std::int64_t stored_ms = 0;  ///< unix ms when the upstream answer was received
    std::uint32_t fresh_ms = 0;  ///< fresh until stored + fresh_ms
    std::uint32_t swr_ms = 0;    ///< stale-while-revalidate until stored + swr_ms (>= fresh_ms)
    std::uint32_t sie_ms = 0;    ///< stale-if-error until stored + sie_ms (>= swr_ms): key's PX
    std::string account;         ///< 32 lowercase hex
    std::string id;              ///< the canonical (percent-encoded) image id
    std::string body;            ///< the validated upstream body

    friend bool operator==(const l2_record&, const l2_record&) = default;
};

/// Why bytes from Redis were refused (a refusal is a miss: the key is fetched again).
enum class l2_refusal : std::uint8_t {
    none,
    truncated,       ///< shorter than its header or its lengths say, or longer
    bad_magic,       ///< not an imagegate L2 value
    future_version,  ///< another envelope version
    bad_kind,        ///< unknown kind, or a status that does not go with it
    too_large,       ///< account, id or body over the limits
    key_mismatch,    ///< stored for another account or id
    bad_windows,     ///< windows out of order
    from_future,     ///< stored further in the future than the allowed clock skew
    expired,         ///< past every window (Redis should have dropped it)
    invalid_body,    ///< the body fails the validator the upstream answers pass
};

std::string_view to_string(l2_refusal r) noexcept;

struct l2_limits {
    std::size_t max_body_bytes = 1024 * 1024;  ///< upstream.max_body_bytes
    std::int64_t max_clock_skew_ms = 60'000;   ///< tolerated writer clock ahead of ours
};

/// The envelope of `r` (no checks: the writer encodes what it validated itself).
std::string encode(const l2_record& r);

/// Decodes `bytes` read under `expected`'s key at wall time `now_ms`; on a refusal `out` is
/// unspecified. Checks everything except the body's JSON (check_body).
l2_refusal decode(std::string_view bytes, cache::key_view expected, std::int64_t now_ms,
                  const l2_limits& limits, l2_record& out);

/// Re-validates a decoded record's body exactly as an upstream answer of that status is
/// validated (gateway/validate): 200 → the image record of `image_id` (decoded id), draft
/// flag matching the kind; 404 → an error envelope with code 5404. `parser` is the caller's.
l2_refusal check_body(const l2_record& r, std::string_view image_id,
                      simdjson::ondemand::parser& parser);

/// The record of an L1 entry at (steady `now`, wall `now_ms`).
l2_record to_record(const cache::entry& e, cache::time_point now, std::int64_t now_ms);

/// The parameters of an L1 entry for a record (times mapped onto the steady clock at (`now`,
/// `now_ms`); a writer clock ahead of ours counts as age 0). The entry's windows end when the
/// record's do, so L1 never keeps it fresh longer than L2 does.
cache::entry_params to_entry_params(const l2_record& r, cache::key_view k, cache::time_point now,
                                    std::int64_t now_ms);

/// Milliseconds until the record's last window ends at `now_ms` (the key's PX); <= 0: expired.
std::int64_t remaining_ms(const l2_record& r, std::int64_t now_ms) noexcept;

}  // namespace imagegate::fleet
