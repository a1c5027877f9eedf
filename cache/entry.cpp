#include "cache/entry.hpp"

#include <boost/assert.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>
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

// The control block std::allocate_shared puts in front of the object: vtable pointer plus
// the use and weak counts.
constexpr std::size_t control_block_bytes = 16;

// Bytes the next `trailing_allocator::allocate` on this thread adds after the object, and
// the size it last requested. Thread-local, so the allocator itself is empty and adds
// nothing to the control block (a stateful one would be stored there for the entry's life).
thread_local std::size_t trailing_bytes = 0;
thread_local std::size_t last_request = 0;

// Allocates the control block + entry with `trailing_bytes` more room behind them: the
// entry's key, head and body. Frees with the unsized operator delete, which needs no size.
template <class T>
struct trailing_allocator {
    using value_type = T;

    trailing_allocator() = default;
    template <class U>
    trailing_allocator(const trailing_allocator<U>&) noexcept {}  // NOLINT: rebinding

    T* allocate(std::size_t n) {
        last_request = n * sizeof(T) + std::exchange(trailing_bytes, 0);
        return static_cast<T*>(::operator new(last_request));
    }
    void deallocate(T* p, std::size_t) noexcept { ::operator delete(p); }

    template <class U>
    friend bool operator==(const trailing_allocator&, const trailing_allocator<U>&) noexcept {
        return true;
    }
};

}  // namespace

entry::entry(private_tag, const entry_params& p, std::string_view head) noexcept
    : stored_at_(p.stored_at),
      body_size_(p.body.size()),
      key_size_(static_cast<std::uint32_t>(p.key.joined().size())),
      split_(static_cast<std::uint32_t>(p.key.account().size())),
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
    return allocation_bytes(control_block_bytes + sizeof(entry) + key_size_ + head_size_ +
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
    BOOST_ASSERT(p.key.joined().size() <= std::numeric_limits<std::uint32_t>::max());

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
    append("\r\nContent-Type: application/json\r\nContent-Length: ");
    end = std::to_chars(end, head + sizeof head, p.body.size()).ptr;
    append("\r\n");
    const std::string_view rendered(head, static_cast<std::size_t>(end - head));

    const std::size_t trailing = p.key.joined().size() + rendered.size() + p.body.size();
    trailing_bytes = trailing;
    std::shared_ptr<const entry> e = std::allocate_shared<entry>(
        trailing_allocator<entry>{}, entry::private_tag{}, p, rendered);
    // The formula in bytes() assumes this request size; libstdc++'s in-place control block
    // is the 16-byte header followed by the entry.
    BOOST_ASSERT(last_request == control_block_bytes + sizeof(entry) + trailing);
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
