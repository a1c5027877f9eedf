// The response a handler gives the session: status line and headers as bytes, a body that
// is either owned or borrowed from a cache entry, and what the access log needs.
#pragma once

#include "gateway/errc.hpp"

#include <memory>
#include <string>
#include <string_view>

namespace imagegate::gateway {

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
    std::string head;
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
void append_status_line(std::string& out, unsigned status);

/// A complete reply with `body` of `content_type`; `extra_headers` are CRLF-terminated lines.
reply make_reply(unsigned status, std::string body, std::string_view content_type,
                 std::string_view extra_headers = {});

/// The Cloudflare-style envelope for `e`, with its HTTP status (405 adds `Allow`).
reply make_error_reply(errc e, std::string_view extra_headers = {});

}  // namespace imagegate::gateway
