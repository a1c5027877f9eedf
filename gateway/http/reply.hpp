// The response a handler gives the session: status line and headers as bytes, a body that
// is either owned or borrowed from a cache entry, and what the access log needs.
#pragma once

#include "gateway/core/errc.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace imagegate::gateway {

/// Header bytes built per response. Up to `inline_capacity` bytes live inside the object,
/// so the per-request part of a cache hit (`Age`, `Cache-Status`) costs no allocation;
/// longer heads (errors with extra headers) spill to the heap.
class head_buffer {
public:
    static constexpr std::size_t inline_capacity = 200;

    head_buffer() = default;
    head_buffer(const head_buffer& o) { append(o.view()); }
    head_buffer& operator=(const head_buffer& o) {
        if (this != &o) {
            clear();
            append(o.view());
        }
        return *this;
    }
    head_buffer(head_buffer&& o) noexcept { *this = std::move(o); }
    head_buffer& operator=(head_buffer&& o) noexcept {
        size_ = o.size_;
        heap_ = std::move(o.heap_);
        if (size_ <= inline_capacity && heap_.empty()) {
            std::copy_n(o.inline_.data(), size_, inline_.data());
        }
        o.clear();
        return *this;
    }

    void append(std::string_view s) {
        if (s.empty()) {
            return;  // an empty view may carry a null pointer, which memcpy must not get
        }
        if (heap_.empty() && size_ + s.size() <= inline_capacity) {
            copy_bytes(inline_.data() + size_, s.data(), s.size());
        } else {
            if (heap_.empty()) {
                heap_.reserve(2 * inline_capacity + s.size());
                heap_.assign(inline_.data(), size_);
            }
            heap_.append(s);
        }
        size_ += s.size();
    }
    head_buffer& operator+=(std::string_view s) {
        append(s);
        return *this;
    }
    head_buffer& operator+=(char c) {
        append(std::string_view(&c, 1));
        return *this;
    }
    void clear() noexcept {
        size_ = 0;
        heap_.clear();
    }
    const char* data() const noexcept { return heap_.empty() ? inline_.data() : heap_.data(); }
    std::size_t size() const noexcept { return size_; }
    std::string_view view() const noexcept { return {data(), size_}; }

private:
    // Out of line on purpose: once inlined into callers that append constant-size strings,
    // GCC 12 at -O3 reports false -Warray-bounds errors on the branch it cannot rule out.
    [[gnu::noinline]] static void copy_bytes(char* dst, const char* src, std::size_t n) noexcept {
        std::memcpy(dst, src, n);
    }

    std::array<char, inline_capacity> inline_{};
    std::size_t size_ = 0;
    std::string heap_;  // used once the head outgrows inline_
};

/// A response ready to be written as one buffer sequence:
/// `prepared_head` + `head` + "Connection: …\r\n\r\n" + body (body omitted for HEAD).
/// Distinct objects safe, shared unsafe; movable (views stay valid across moves because
/// borrowed bytes are kept alive by `owner`, never by the reply's own strings).
struct reply {
    unsigned status = 200;
    /// Status line and fixed headers rendered once and owned by `owner` (a cache entry);
    /// empty when `head` carries the status line itself.
    std::string_view prepared_head;
    /// Per-request header lines (and the status line when `prepared_head` is empty), each
    /// ending in CRLF, without the final blank line. Must contain Content-Length.
    head_buffer head;
    /// Keeps `prepared_head` and a borrowed body alive until the write completes.
    std::shared_ptr<const void> owner;
    /// Cache-Status value for the access log (points into static storage or `head`).
    std::string_view cache_status;
    /// Route label for metrics (static storage; see metrics::registry::routes).
    std::string_view route = "other";
    /// Close the connection after writing.
    bool close = false;

    /// The body to write: borrowed (owned by `owner`) or owned by this reply.
    std::string_view body() const noexcept { return borrowed_ ? borrowed_body_ : owned_body_; }
    void set_body(std::string body) {
        owned_body_ = std::move(body);
        borrowed_ = false;
    }
    void borrow_body(std::string_view body) noexcept {
        borrowed_body_ = body;
        borrowed_ = true;
    }

private:
    std::string owned_body_;
    std::string_view borrowed_body_;
    bool borrowed_ = false;
};

/// Appends "HTTP/1.1 <status> <reason>\r\n".
void append_status_line(head_buffer& out, unsigned status);

/// A complete reply with `body` of `content_type`; `extra_headers` are CRLF-terminated lines.
reply make_reply(unsigned status, std::string body, std::string_view content_type,
                 std::string_view extra_headers = {});

/// When a refused or failed client should come back, as the official SDKs read it: they
/// honour `x-should-retry` first, then `retry-after-ms`, then `Retry-After` (RFC 9110
/// §10.2.3, whole seconds). Both values are always sent together and say the same.
struct retry_after {
    std::uint64_t seconds = 1;
    std::uint64_t milliseconds = 1000;
};

/// The Cloudflare-style envelope for `e`, with its HTTP status (405 adds `Allow: GET, HEAD`
/// unless `extra_headers` has an `Allow` line), and what SDKs read before retrying:
/// `x-should-retry: false` when a retry cannot help (errc.cpp's table), and `Retry-After` +
/// `retry-after-ms` from `after` — for every 429 and 503 (1 s when the caller knows no
/// better), for other statuses only when given.
reply make_error_reply(errc e, std::string_view extra_headers = {},
                       std::optional<retry_after> after = std::nullopt);

}  // namespace imagegate::gateway
