// The fleet budget's Redis side: the Lua scripts (GCRA reservation, give-back, fleet-wide
// pause), the keys and arguments they are called with, and the strict decoding of their replies.
// Pure: no I/O, so the reply validation is unit-tested table by table.
#pragma once

#include "gateway/redis/reply.hpp"
#include "gateway/redis/script.hpp"

#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace imagegate::fleet {

using micros = std::chrono::microseconds;

/// Why the script is correct (the reservation script, `reserve_script()`):
///
/// Clock. Every instant is Redis `TIME` in microseconds since the epoch, read inside the
/// script: one clock for the whole fleet, and the read and the update of the schedule are one
/// atomic step (a script runs alone). Instances never send their own time. Replies carry
/// waits relative to that `TIME`; an instance adds them to its steady clock at the moment the
/// reply arrived, which is after Redis read `TIME`, so a local slot is never earlier than the
/// fleet's (it is late by at most the reply's one-way trip).
///
/// TAT arithmetic. The same GCRA as shield::budget: the key holds `tat`, the theoretical
/// arrival time of the next call at the refill rate; interval = ceil(window / budget) in µs
/// (never faster than the configured rate). A call conforms when tat - now <= tolerance,
/// (burst - 1) · interval for foreground calls, (burst - 1 - reserve) · interval for
/// background ones (which therefore leave `reserve` tokens behind and never queue). A granted
/// call moves tat to max(tat, now) + interval; a foreground call that does not conform gets
/// slot = tat - tolerance (the instant it would conform) and tat += interval, if the slot is
/// within its max_wait; otherwise it is refused with that slot as its truthful wait, and the
/// slot is held for its key (a sorted set of key → slot) when within the hold horizon. Every
/// slot handed out (now, queued or held) is one interval after the previous one, so over ANY
/// interval T at most burst + T / interval slots exist, fleet-wide, whatever the number of
/// instances: the same bound as one instance's budget. A released slot goes back only if it
/// was the last one handed out (tat moves back one interval); an earlier future one becomes
/// vacant (a sorted set) and the next foreground call that would queue takes it; a slot in
/// the past is lost. No slot is ever created, so give-backs cannot break the bound.
///
/// Debt. Calls this instance granted from its local fallback budget while Redis was away are
/// charged on its first reservation afterwards (tat = max(tat, now) + debt · interval, capped
/// at burst), so a Redis that lost its state cannot hand the fleet a second full burst.
///
/// Resize. Every write of tat also writes the interval it is counted in (a key of its own,
/// with the same TTL, so the tat key keeps the format older versions read). A reservation that
/// finds another interval than its own (a reload changed the fleet's sizes) first re-expresses
/// the schedule: tat = now + ceil((tat - now) / old) · new, the calls spent staying spent, so
/// a lowered budget or burst never grants more than the new sizes allow. Slots already handed
/// out keep their instants; a give-back whose grant was counted in another interval is lost
/// rather than undone in the wrong unit.
///
/// Pause. The block key is checked first, in the same script: while it lives every call is
/// refused with its remaining PTTL. It is written with PX = the pause, keeping the longer of
/// the existing and the new one (`block_script()`), so it ends by itself.
///
/// TTLs. The budget key expires when tat is reached: from then on the bucket is full, which is
/// exactly what a missing key means. The holds set lives until its latest slot's grace ends,
/// the vacancies until the latest vacant slot: after that none of them can be used. Nothing
/// the fleet writes outlives the moment it stops mattering.
///
/// Cluster. Every key one script touches carries the same hash tag `{<quota>}`.
const redis::script& reserve_script();
/// Gives an unspent slot back (best effort): reply 0 lost, 1 back to the bucket, 2 vacant.
const redis::script& give_back_script();
/// Sets the block key for ARGV[1] ms unless it already runs longer; replies the pause left
/// in ms (decode_block).
const redis::script& block_script();

/// The keys of one quota ("token", or the hex SHA-256 digest of a caller credential).
struct quota_keys {
    std::string budget;  ///< `<prefix>:budget:{<quota>}`: tat (µs of Redis TIME)
    std::string holds;   ///< `<prefix>:budget:{<quota>}:holds`: hold key → slot
    std::string vacant;  ///< `<prefix>:budget:{<quota>}:vacant`: vacant slots
    /// `<prefix>:budget:{<quota>}:interval`: the interval (µs) `budget` was written with
    std::string interval;
    std::string block;  ///< `<prefix>:block:{<quota>}`: the fleet-wide pause (PX)
};

quota_keys keys_for(std::string_view prefix, std::string_view quota);

/// The hex form of a SHA-256 digest (the passthrough quota name: never the credential).
std::string hex(const unsigned char* bytes, std::size_t n);

/// A stable 64-bit hash of a cache key (FNV-1a) as 16 hex digits: the same on every instance,
/// so a client that comes back to another instance still claims its held slot. Empty: none.
std::string hold_key(std::string_view cache_key);

/// The budget in the units the scripts use.
struct script_budget {
    std::int64_t interval_us = 0;  ///< ceil(window / budget)
    std::int64_t burst = 0;
    std::int64_t reserve = 0;  ///< tokens a background call leaves
    std::int64_t hold_horizon_us = 0;
    std::int64_t hold_grace_us = 0;
    std::int64_t max_holds = 0;
};

/// What one reservation asks.
struct reserve_request {
    bool background = false;
    micros max_wait{0};
    std::string hold_key;  ///< empty: no hold made or claimed
    std::int64_t debt = 0;
};

/// ARGV of reserve_script() (KEYS: budget, holds, vacant, block, interval).
std::vector<std::string> reserve_args(const script_budget& b, const reserve_request& r);

/// What the reservation script decided (the first element of its reply).
enum class outcome : std::uint8_t {
    granted_now = 0,     ///< go at once
    granted_queued = 1,  ///< go at `slot` (within max_wait)
    granted_held = 2,    ///< the slot held for this key, claimed
    refused = 3,         ///< no slot within max_wait; none held
    refused_hold = 4,    ///< no slot within max_wait; the slot is now held for the key
    refused_held = 5,    ///< the key's held slot is not due within max_wait (came back early)
    paused = 6,          ///< the fleet-wide pause runs
    reserve = 7,         ///< background: only the foreground reserve is left
};

std::ostream& operator<<(std::ostream& os, outcome o);

/// A validated reply of reserve_script().
struct reserve_reply {
    outcome what = outcome::refused;
    /// Until the slot (granted), until a slot exists (refused) or until the pause ends.
    micros wait{0};
    /// The slot in Redis TIME µs (granted, and refused with a hold); 0 otherwise.
    std::int64_t slot_us = 0;
    /// Granted now or queued: tat right after this grant (for give-back); 0 otherwise.
    std::int64_t tat_us = 0;

    bool granted() const noexcept { return what <= outcome::granted_held; }
    friend bool operator==(const reserve_reply&, const reserve_reply&) = default;
};

std::ostream& operator<<(std::ostream& os, const reserve_reply& r);

/// Why a reply was refused: the `reason` label of a fallback.
enum class reply_error : std::uint8_t {
    error_reply,   ///< Redis answered an error (script error, OOM, NOSCRIPT twice, …)
    wrong_shape,   ///< not an array of four integers
    bad_outcome,   ///< an outcome code the script never returns, or one not for this call
    out_of_range,  ///< a wait, slot or tat outside what the script can produce
    inconsistent,  ///< fields that contradict the outcome (e.g. a grant beyond max_wait)
};

std::string_view to_string(reply_error e) noexcept;
std::ostream& operator<<(std::ostream& os, reply_error e);

/// No wait the scripts produce is longer: a day (the longest window) plus an hour (the longest
/// pause) bounds every schedule.
inline constexpr micros max_wait_bound = std::chrono::hours(25);
/// Redis TIME in µs fits a double exactly (Lua numbers) below 2^53.
inline constexpr std::int64_t max_time_us = std::int64_t{1} << 53;

/// Checks a reply of reserve_script() for the call `r` asked for: every type, range and
/// the consistency of the fields with the outcome. A hostile or broken reply never grants.
boost::system::result<reserve_reply, reply_error> decode_reserve(const redis::reply& reply,
                                                                 const reserve_request& r);

/// What give_back_script() did.
enum class give_back_result : std::uint8_t { lost = 0, given_back = 1, vacant = 2, failed = 3 };

/// Decodes a block_script() reply: the pause left, clamped to `cap`; nullopt if malformed.
std::optional<std::chrono::milliseconds> decode_block(const redis::reply& reply,
                                                      std::chrono::milliseconds cap) noexcept;

/// Decodes a give_back_script() reply; anything else is `failed`.
give_back_result decode_give_back(const redis::reply& reply) noexcept;

}  // namespace imagegate::fleet
