#include "cache/entry.hpp"

#include <boost/assert.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <ostream>
#include <string>

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

clock::duration non_negative(clock::duration d) noexcept {
    return std::max(d, clock::duration::zero());
}

// The control block std::make_shared puts in front of the object: vtable pointer plus the
// use and weak counts.
constexpr std::size_t control_block_bytes = 16;

}  // namespace

entry::entry(private_tag, entry_params&& p)
    : key_(std::move(p.key)),
      stored_at_(p.stored_at),
      status_(p.status),
      kind_(p.kind) {
    BOOST_ASSERT(p.status >= 100 && p.status <= 999);

    char length[24];
    const auto [length_end, ec] = std::to_chars(length, length + sizeof length, p.body.size());
    BOOST_ASSERT(ec == std::errc{});
    const std::string_view reason = reason_phrase(p.status);

    std::string head;
    head.reserve(64);
    head.append("HTTP/1.1 ").append(std::to_string(p.status)).append(" ").append(reason);
    head.append("\r\nContent-Type: application/json\r\nContent-Length: ");
    head.append(length, length_end).append("\r\n");

    head_size_ = head.size();
    buffer_size_ = head.size() + p.body.size();
    buffer_ = std::make_unique_for_overwrite<char[]>(buffer_size_);
    std::memcpy(buffer_.get(), head.data(), head.size());
    if (!p.body.empty()) {
        std::memcpy(buffer_.get() + head_size_, p.body.data(), p.body.size());
    }

    fresh_until_ = stored_at_ + non_negative(p.ttl);
    swr_until_ = fresh_until_ + non_negative(p.swr);
    sie_until_ = std::max(fresh_until_ + non_negative(p.sie), swr_until_);

    bytes_ = allocation_bytes(control_block_bytes + sizeof(entry)) +
             allocation_bytes(buffer_size_) + allocation_bytes(key_.heap_bytes());
}

freshness entry::classify(time_point now) const noexcept {
    if (now < fresh_until_) {
        return freshness::fresh;
    }
    if (now < swr_until_) {
        return freshness::stale_revalidate;
    }
    if (now < sie_until_) {
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
    return std::chrono::floor<std::chrono::seconds>(fresh_until_ - stored_at_) - age(now);
}

std::shared_ptr<const entry> make_entry(entry_params p) {
    return std::make_shared<const entry>(entry::private_tag{}, std::move(p));
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
