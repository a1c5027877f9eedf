#include "cache/entry.hpp"

#include <boost/assert.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <ostream>
#include <utility>

namespace imagegate::cache {
namespace {

// Reason phrases are optional (RFC 9112 §4); only the statuses the gateway stores get one.
std::string_view reason_phrase(unsigned status) noexcept {
    switch (status) {
    case 200: return "OK";
    case 404: return "Not Found";
    default: return {};
    }
}

// Milliseconds in `d` (negative counts as 0), capped at the largest 32-bit offset.
std::uint32_t offset_ms(clock::duration d) noexcept {
    constexpr auto max = std::numeric_limits<std::uint32_t>::max();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    if (ms <= 0) {
        return 0;
    }
    return ms >= max ? max : static_cast<std::uint32_t>(ms);
}

std::uint32_t add_capped(std::uint32_t a, std::uint32_t b) noexcept {
    const std::uint64_t sum = std::uint64_t{a} + b;
    constexpr auto max = std::numeric_limits<std::uint32_t>::max();
    return sum >= max ? max : static_cast<std::uint32_t>(sum);
}

// The control block std::allocate_shared puts in front of the object: vtable pointer, the
// use and weak counts, and the allocator below (its 32-bit size, padded to the entry's
// alignment). A library with another layout fails to compile (trailing_allocator::allocate)
// or, if it moved the entry inside the block, aborts on the first entry (make_entry).
constexpr std::size_t control_block_bytes = 24;

// Entries get memory of their own. Allocated from the general heap they interleave with the
// short-lived allocations of the miss that produced them (response buffers, parser state,
// coroutine frames); once those are freed the holes between long-lived entries stay, and a
// filled cache measured about 250 bytes of free heap per entry (RSS over the accounted
// bytes). Here entries are carved from 1 MiB blocks in 16-byte size classes, and a freed
// entry's slot is reused for the next entry of its class, so the heap's churn never lands
// between entries. Entries larger than `max_slot` (rare: records are about 1 KiB) use the
// heap. Sanitizer builds use the heap for every entry, so use-after-free stays detectable.
//
// One arena per process, created on first use and never destroyed: entries are freed by
// whichever thread drops the last reference, possibly during static destruction at exit.
// Thread-safety: every member may be called from any thread (one mutex; taken per entry
// stored or freed, never on a hit).
class entry_arena {
public:
    static constexpr std::size_t granule = 16;
    static constexpr std::size_t block_bytes = std::size_t{1} << 20;

    static entry_arena& instance() {
        static entry_arena* arena = new entry_arena;  // NOLINT: intentionally never freed
        return *arena;
    }

    // `n` bytes: a slot of entry_slot_bytes(n) in the arena, or n bytes from the heap.
    void* allocate(std::size_t n) {
        if (!enabled || n > entry_max_slot_bytes) {
            return ::operator new(n);
        }
        const std::size_t slot = entry_slot_bytes(n);
        const std::size_t cls = slot / granule;
        const std::lock_guard lock(mu_);
        if (free_slot* f = free_[cls]) {
            free_[cls] = f->next;
            return f;
        }
        if (static_cast<std::size_t>(end_ - next_) < slot) {
            new_block();
        }
        void* p = next_;
        next_ += slot;
        return p;
    }

    void deallocate(void* p, std::size_t n) noexcept {
        if (!enabled || n > entry_max_slot_bytes) {
            ::operator delete(p);
            return;
        }
        const std::lock_guard lock(mu_);
        push(p, entry_slot_bytes(n));
    }

private:
    struct free_slot {
        free_slot* next;
    };

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    static constexpr bool enabled = false;
#else
    static constexpr bool enabled = true;
#endif

    void push(void* p, std::size_t slot) noexcept {
        auto* f = ::new (p) free_slot{free_[slot / granule]};
        free_[slot / granule] = f;
    }

    // The unused tail of the current block becomes a free slot of its size class.
    void new_block() {
        const auto left = static_cast<std::size_t>(end_ - next_);
        if (left >= granule) {
            push(next_, std::min(left, entry_max_slot_bytes) / granule * granule);
        }
        next_ = static_cast<char*>(::operator new(block_bytes));
        end_ = next_ + block_bytes;
    }

    std::mutex mu_;
    std::array<free_slot*, entry_max_slot_bytes / granule + 1> free_{};  // guarded by mu_
    char* next_ = nullptr;                                               // guarded by mu_
    char* end_ = nullptr;                                                // guarded by mu_
};

// The block the calling thread's last entry allocation returned: make_entry checks where the
// entry landed in it. Set and read within one make_entry call, never across a suspension.
// (Not a member of the allocator: the allocator lives inside the control block, and a
// pointer there would make the control block 32 bytes.)
thread_local const char* last_entry_block = nullptr;

// Allocates the control block + entry and the trailing key, head and body as one block of
// `bytes` (the whole request) from the arena, and frees it back there. It carries the size
// because a block's size class is not recorded anywhere else.
template <class T>
struct trailing_allocator {
    using value_type = T;

    explicit trailing_allocator(std::uint32_t total) noexcept : bytes(total) {}
    template <class U>
    trailing_allocator(const trailing_allocator<U>& o) noexcept : bytes(o.bytes) {}  // NOLINT

    T* allocate(std::size_t n) {
        // T is the library's control block with the entry inside: exactly what bytes()
        // charges, or the trailing buffer (right after the entry) would overlap the next slot.
        static_assert(sizeof(T) == control_block_bytes + sizeof(entry),
                      "std::allocate_shared's control block is not the 24 bytes entry::bytes() "
                      "and the layout in cache/entry.hpp assume");
        BOOST_ASSERT(n * sizeof(T) <= bytes);
        (void)n;
        auto* p = entry_arena::instance().allocate(bytes);
        last_entry_block = static_cast<const char*>(p);
        return static_cast<T*>(p);
    }
    void deallocate(T* p, std::size_t) noexcept { entry_arena::instance().deallocate(p, bytes); }

    template <class U>
    friend bool operator==(const trailing_allocator& a, const trailing_allocator<U>& b) noexcept {
        return a.bytes == b.bytes;
    }

    std::uint32_t bytes;
};

}  // namespace

static_assert(sizeof(entry) == 32, "bytes() and the layout comment assume a 32-byte entry");

entry::entry(private_tag, const entry_params& p, std::string_view head) noexcept
    : stored_at_(p.stored_at),
      body_size_(static_cast<std::uint32_t>(p.body.size())),
      key_size_(static_cast<std::uint16_t>(p.key.joined().size())),
      split_(static_cast<std::uint16_t>(p.key.account().size())),
      fresh_ms_(offset_ms(p.ttl)),
      status_(static_cast<std::uint16_t>(p.status)),
      head_size_(static_cast<std::uint8_t>(head.size())),
      kind_(p.kind) {
    swr_ms_ = add_capped(fresh_ms_, offset_ms(p.swr));
    sie_ms_ = std::max(add_capped(fresh_ms_, offset_ms(p.sie)), swr_ms_);
    char* out = data();
    std::memcpy(out, p.key.joined().data(), key_size_);
    std::memcpy(out + key_size_, head.data(), head_size_);
    if (body_size_ != 0) {
        std::memcpy(out + key_size_ + head_size_, p.body.data(), body_size_);
    }
}

std::size_t entry::bytes() const noexcept {
    return entry_slot_bytes(control_block_bytes + sizeof(entry) + key_size_ + head_size_ +
                            body_size_);
}

freshness entry::classify(time_point now) const noexcept {
    if (now < at(fresh_ms_)) {
        return freshness::fresh;
    }
    if (now < at(swr_ms_)) {
        return freshness::stale_revalidate;
    }
    if (now < at(sie_ms_)) {
        return freshness::stale_if_error;
    }
    return freshness::expired;
}

std::chrono::seconds entry::age(time_point now) const noexcept {
    if (now <= stored_at_) {
        return std::chrono::seconds::zero();
    }
    return std::chrono::floor<std::chrono::seconds>(now - stored_at_);
}

std::chrono::seconds entry::ttl_remaining(time_point now) const noexcept {
    return std::chrono::floor<std::chrono::seconds>(std::chrono::milliseconds(fresh_ms_)) -
           age(now);
}

std::shared_ptr<const entry> make_entry(entry_params p) {
    BOOST_ASSERT(p.status >= 100 && p.status <= 999);
    BOOST_ASSERT(p.key.joined().size() <= std::numeric_limits<std::uint16_t>::max());
    BOOST_ASSERT(p.body.size() < std::numeric_limits<std::uint32_t>::max() - 4096);

    // Rendered first: its size is part of the allocation. At most ~95 bytes (3-digit status,
    // longest reason phrase, 20-digit length), so it fits head_size_'s 8 bits.
    char head[128];
    char* end = head;
    const auto append = [&end](std::string_view s) {
        end = std::copy(s.begin(), s.end(), end);  // no memcpy: s.data() may be null
    };
    append("HTTP/1.1 ");
    end = std::to_chars(end, head + sizeof head, p.status).ptr;
    append(" ");
    append(reason_phrase(p.status));
    append("\r\nContent-Length: ");
    end = std::to_chars(end, head + sizeof head, p.body.size()).ptr;
    append("\r\n");
    const std::string_view rendered(head, static_cast<std::size_t>(end - head));

    const std::size_t trailing = p.key.joined().size() + rendered.size() + p.body.size();
    const std::size_t total = control_block_bytes + sizeof(entry) + trailing;
    std::shared_ptr<const entry> e =
        std::allocate_shared<entry>(trailing_allocator<entry>{static_cast<std::uint32_t>(total)},
                                    entry::private_tag{}, p, rendered);
    // The entry must end where the control block ends: its trailing buffer starts there.
    // Checked in every build (one comparison per stored entry); a library that puts the
    // object elsewhere in its control block would make every entry overwrite memory.
    if (reinterpret_cast<const char*>(e.get()) != last_entry_block + control_block_bytes) {
        std::fputs(
            "imagegate: internal check failed: std::allocate_shared places the entry "
            "at another offset than cache/entry.cpp assumes\n",
            stderr);
        std::abort();
    }
    return e;
}

std::string_view to_string(entry_kind k) noexcept {
    switch (k) {
    case entry_kind::positive: return "positive";
    case entry_kind::negative: return "negative";
    case entry_kind::draft: return "draft";
    }
    return "unknown";
}

std::string_view to_string(freshness f) noexcept {
    switch (f) {
    case freshness::fresh: return "fresh";
    case freshness::stale_revalidate: return "stale_revalidate";
    case freshness::stale_if_error: return "stale_if_error";
    case freshness::expired: return "expired";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, entry_kind k) { return os << to_string(k); }
std::ostream& operator<<(std::ostream& os, freshness f) { return os << to_string(f); }

}  // namespace imagegate::cache
