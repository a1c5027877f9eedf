// One cached answer: the pre-rendered response bytes of an image record (or of a "not found"
// envelope), its freshness windows (RFC 9111 §4.2, RFC 5861) and the bytes it is charged for.
#pragma once

#include "cache/key.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string_view>

namespace imagegate::cache {

using clock = std::chrono::steady_clock;
using time_point = clock::time_point;

/// What an entry stands for; chooses the freshness lifetime upstream of the cache and the
/// cache-status metrics downstream.
enum class entry_kind : std::uint8_t {
    positive,  ///< a validated 200 image record
    negative,  ///< a validated 404 envelope with code 5404: the image does not exist
    draft,     ///< a validated 200 whose record has "draft": true (upload not finished yet)
};

/// Where `now` falls in an entry's life. The windows nest: fresh, then stale-while-revalidate,
/// then stale-if-error, then expired; each state is decided by the first window `now` is in.
enum class freshness : std::uint8_t {
    fresh,             ///< now < fresh_until: answer from the cache as is
    stale_revalidate,  ///< stale, inside stale-while-revalidate: answer, refresh in background
    stale_if_error,    ///< stale, inside stale-if-error only: refetch, answer this on failure
    expired,           ///< past every window: unusable, treat as a miss
};

std::string_view to_string(entry_kind k) noexcept;
std::string_view to_string(freshness f) noexcept;
std::ostream& operator<<(std::ostream& os, entry_kind k);
std::ostream& operator<<(std::ostream& os, freshness f);

/// Input of `make_entry`, meant for designated initialisers. Negative durations count as 0.
struct entry_params {
    cache::key key{};
    unsigned status = 200;  ///< HTTP status to answer, 100..999 (200, or 404 for negative)
    entry_kind kind = entry_kind::positive;
    std::string_view body{};  ///< response body, copied into the entry
    time_point stored_at{};   ///< when the upstream answer was received
    clock::duration ttl{};    ///< freshness lifetime
    clock::duration swr{};    ///< stale-while-revalidate, counted from the end of ttl
    clock::duration sie{};    ///< stale-if-error, counted from the end of ttl
};

/// An immutable cached answer, shared as `std::shared_ptr<const entry>` by the cache and by
/// every response being written from it; the last holder frees it.
///
/// Thread-safety: immutable after `make_entry`, so any number of threads may read one entry
/// concurrently without synchronisation.
///
/// Layout: one allocation per entry. `make_entry` uses `std::allocate_shared` with an
/// allocator that over-allocates, so the control block, this object and a trailing byte
/// buffer share one block of memory:
///
///     [control block 24][entry 32][key: account '\0' image_id][head][body]
///
/// The block comes from the entry arena (entry.cpp: 16-byte size classes in blocks of their
/// own, so the heap churn of misses never fragments the memory between entries), or from
/// the heap above `entry_max_slot_bytes`. The key bytes live only here: the cache indexes
/// entries by a view of them. The windows are kept as 32-bit millisecond offsets from
/// stored_at (windows longer than ~49.7 days are capped there; sub-millisecond parts are
/// dropped).
///
/// `bytes()` is what the entry costs in memory while alive, as the cache charges it:
///
///     bytes = entry_slot_bytes(24 + sizeof(entry) + key + head + body)
///
/// where entry_slot_bytes(n) is n rounded up to 16 in the arena, or the glibc malloc chunk
/// size above it, and 24 is the shared_ptr control block (vtable pointer, use and weak
/// counts, and the allocator's 32-bit slot size, padded).
class entry;
std::shared_ptr<const entry> make_entry(entry_params p);

class entry {
    struct private_tag {};

public:
    /// Use `make_entry`; public only so `std::allocate_shared` can reach it. The trailing
    /// buffer must already be allocated right after this object.
    entry(private_tag, const entry_params& p, std::string_view head) noexcept;

    entry(const entry&) = delete;
    entry& operator=(const entry&) = delete;

    friend std::shared_ptr<const entry> make_entry(entry_params p);

    /// The key, as a view of the bytes stored in this entry (valid while the entry is).
    key_view key() const noexcept {
        const std::size_t split = split_;
        return {{data(), split}, {data() + split + 1, std::size_t{key_size_} - split - 1}};
    }
    unsigned status() const noexcept { return status_; }
    entry_kind kind() const noexcept { return kind_; }

    /// Status line and `Content-Length`, each ending in CRLF, without the blank line: the
    /// per-request headers (`content_type_line`, `Age`, `Cache-Status`, `Connection`) go
    /// between head() and the blank line that precedes body(). The constant Content-Type
    /// is not stored: 32 bytes less per entry.
    std::string_view head() const noexcept { return {data() + key_size_, head_size_}; }
    std::string_view body() const noexcept { return {data() + key_size_ + head_size_, body_size_}; }

    time_point stored_at() const noexcept { return stored_at_; }
    time_point fresh_until() const noexcept { return at(fresh_ms_); }
    time_point stale_while_revalidate_until() const noexcept { return at(swr_ms_); }
    /// Never earlier than stale_while_revalidate_until(): a record that may be answered
    /// stale while it is being revalidated may also be answered when that revalidation fails.
    time_point stale_if_error_until() const noexcept { return at(sie_ms_); }

    /// Accounted memory; formula in the class comment.
    std::size_t bytes() const noexcept;

    /// Pure: which window `now` is in. A boundary instant belongs to the later state (at
    /// exactly fresh_until the entry is stale: RFC 9111 §4.2, fresh while lifetime > age).
    freshness classify(time_point now) const noexcept;

    /// RFC 9111 §5.1 `Age`: whole seconds since stored_at, rounded down, never negative.
    std::chrono::seconds age(time_point now) const noexcept;

    /// RFC 9211 `ttl=`: freshness lifetime minus age(now), whole seconds; negative once stale.
    /// Computed so that age + ttl_remaining always equals the lifetime in whole seconds.
    std::chrono::seconds ttl_remaining(time_point now) const noexcept;

private:
    // The trailing buffer starts right after this object, inside the same allocation.
    const char* data() const noexcept { return reinterpret_cast<const char*>(this + 1); }
    char* data() noexcept { return reinterpret_cast<char*>(this + 1); }
    time_point at(std::uint32_t offset_ms) const noexcept {
        return stored_at_ + std::chrono::milliseconds(offset_ms);
    }

    time_point stored_at_;
    std::uint32_t body_size_ = 0;
    std::uint16_t key_size_ = 0;  // account + '\0' + image_id
    std::uint16_t split_ = 0;     // account size
    std::uint32_t fresh_ms_ = 0;  // fresh_until - stored_at
    std::uint32_t swr_ms_ = 0;    // stale_while_revalidate_until - stored_at
    std::uint32_t sie_ms_ = 0;    // stale_if_error_until - stored_at
    std::uint16_t status_ = 0;
    std::uint8_t head_size_ = 0;
    entry_kind kind_ = entry_kind::positive;
};

/// Every stored body is JSON; the line is written per answer, not stored per entry.
inline constexpr std::string_view content_type_line = "Content-Type: application/json\r\n";

/// Builds an entry: renders the head, copies the body, computes the windows and the bytes.
/// Precondition: 100 <= p.status <= 999.
std::shared_ptr<const entry> make_entry(entry_params p);

/// Entries of up to this many bytes (control block, entry, key, head and body) live in the
/// entry arena's 16-byte size classes; larger ones are heap allocations.
inline constexpr std::size_t entry_max_slot_bytes = 8192;

/// glibc malloc chunk size for a request of `n` bytes (0 for n == 0); see `entry`.
constexpr std::size_t allocation_bytes(std::size_t n) noexcept {
    if (n == 0) {
        return 0;
    }
    const std::size_t chunk = (n + 8 + 15) & ~std::size_t{15};
    return chunk < 32 ? 32 : chunk;
}

/// Memory an entry allocation of `n` bytes occupies: its arena slot (n rounded up to 16),
/// or the malloc chunk when it is too large for the arena.
constexpr std::size_t entry_slot_bytes(std::size_t n) noexcept {
    return n <= entry_max_slot_bytes ? (n + 15) & ~std::size_t{15} : allocation_bytes(n);
}

}  // namespace imagegate::cache
