#include "gateway/http/request_id.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <random>

namespace imagegate::gateway {
namespace {

constexpr std::string_view header_name = "X-Request-Id";

bool is_id_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

/// 8 hex digits drawn once per process.
std::string_view process_prefix() noexcept {
    static const std::array<char, 8> prefix = [] {
        std::array<char, 8> out{};
        std::uint32_t r = 0;
        try {
            r = std::random_device{}();
        } catch (...) {
            // No entropy source: ids are still unique within the process.
        }
        constexpr std::string_view hex = "0123456789abcdef";
        for (auto& c : out) {
            c = hex[r & 0xfU];
            r >>= 4;
        }
        return out;
    }();
    return {prefix.data(), prefix.size()};
}

/// Per thread: its number (given out in order of first use) and its request counter.
struct thread_ids {
    std::uint32_t number;
    std::uint64_t next = 0;
};

thread_ids& this_thread_ids() noexcept {
    static std::atomic<std::uint32_t> threads{0};
    thread_local thread_ids ids{threads.fetch_add(1, std::memory_order_relaxed)};
    return ids;
}

}  // namespace

bool is_valid_request_id(std::string_view id) noexcept {
    return !id.empty() && id.size() <= max_request_id_bytes &&
           std::all_of(id.begin(), id.end(), is_id_char);
}

std::string_view generate_request_id(request_id_buffer& buf) noexcept {
    auto& ids = this_thread_ids();
    const auto prefix = process_prefix();
    char* out = std::copy(prefix.begin(), prefix.end(), buf.data());
    char* const end = buf.data() + buf.size();
    *out++ = '-';
    out = std::to_chars(out, end, ids.number, 16).ptr;
    *out++ = '-';
    out = std::to_chars(out, end, ids.next++, 16).ptr;
    return {buf.data(), static_cast<std::size_t>(out - buf.data())};
}

std::string_view request_id_for(const boost::beast::http::fields* headers,
                                request_id_buffer& buf) noexcept {
    if (headers != nullptr) {
        const auto it = headers->find(header_name);
        if (it != headers->end()) {
            const std::string_view id(it->value().data(), it->value().size());
            if (is_valid_request_id(id)) {
                return id;
            }
        }
    }
    return generate_request_id(buf);
}

}  // namespace imagegate::gateway
