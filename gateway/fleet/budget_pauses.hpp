// The fleet gate's own memory of upstream pauses by quota: honoured before any Redis call or
// local decision (this instance never calls while its pause write is in flight), and marks
// of which pauses Redis has not confirmed yet, so they are written again when it is back.
#pragma once

#include "gateway/shield/time.hpp"

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace imagegate::fleet {

/// A pause to write to Redis: the quota and when it ends (local steady clock).
struct pending_pause {
    std::string quota;
    shield::time_point until;
};

/// Bounded (`max_entries`): ended pauses are dropped first; when every entry still runs, the
/// one ending soonest makes room (the Redis block key still holds it fleet-wide).
/// Owned by the fleet gate. Thread-safe: every member takes `mu_` for a few map operations.
class pause_table {
public:
    explicit pause_table(std::size_t max_entries);

    /// Pauses `quota` until `until` if that is later than what is known at `now`. Returns
    /// whether it was extended; an extension is unconfirmed until confirm() (`confirmed`:
    /// Redis said so already).
    bool extend(const std::string& quota, shield::time_point now, shield::time_point until,
                bool confirmed);
    /// Redis holds the pause of `quota` until at least `until`.
    void confirm(const std::string& quota, shield::time_point until);
    /// A write of the pause of `quota` failed: it is unconfirmed again.
    void unconfirm(const std::string& quota, shield::time_point until);
    /// How long `quota` is still paused at `now`, if it is.
    std::optional<shield::duration> blocked_for(const std::string& quota,
                                                shield::time_point now) const;
    /// Running pauses Redis has not confirmed; each is returned once (marked as being
    /// written) until unconfirm() puts it back.
    std::vector<pending_pause> take_unconfirmed(shield::time_point now);
    /// Running pauses at `now`.
    std::size_t paused(shield::time_point now) const;

private:
    struct entry {
        shield::time_point until;
        bool confirmed = false;
    };
    void make_room_locked(shield::time_point now);

    const std::size_t max_entries_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, entry> pauses_;  // guarded by mu_
};

}  // namespace imagegate::fleet
