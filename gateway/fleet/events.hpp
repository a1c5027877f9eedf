// The messages instances exchange on `<prefix>:events` (pure): purge of one image, purge of
// an account, and "filled" (an instance wrote a key to L2 and released its lease). Whoever
// can PUBLISH can send them, so the parser is strict and bounded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace imagegate::fleet {

enum class event_kind : std::uint8_t {
    purge_image,    ///< `P <origin> <account> <id>`
    purge_account,  ///< `A <origin> <account>`
    filled,         ///< `F <origin> <account> <id>`
};

/// One event. `origin` is the sender's random instance id (16 lowercase hex): an instance
/// skips its own purges (it acted already).
struct event {
    event_kind kind = event_kind::purge_image;
    std::string origin;
    std::string account;  ///< 32 lowercase hex
    std::string id;       ///< canonical image id; empty for purge_account

    friend bool operator==(const event&, const event&) = default;
};

/// The longest payload accepted (a canonical id of 1024 decoded bytes is at most 3072).
inline constexpr std::size_t max_event_bytes = 3200;

std::string format_event(const event& e);

/// The event of `payload`, or nothing when anything is off: unknown kind, wrong field count,
/// an origin, account or id outside their alphabets and sizes, over max_event_bytes.
std::optional<event> parse_event(std::string_view payload);

/// 16 lowercase hex from a random source: this process's origin and lease owner id.
std::string random_instance_id();

}  // namespace imagegate::fleet
