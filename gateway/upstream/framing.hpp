// Which bytes of one upstream exchange make its answer, without sockets: interim (1xx) heads
// skipped before the final response (RFC 9110 §15.2), the errors for sequences we refuse,
// and the verdict whether the connection may carry another exchange afterwards.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <type_traits>

namespace imagegate::upstream {

/// Interim responses skipped before the final one, at most. Real servers send one or two
/// (100 Continue, 103 Early Hints); more is an upstream stalling us with heads.
inline constexpr unsigned max_interim_responses = 8;

/// Refusals of an exchange beyond what Beast's parser checks. Category "imagegate.upstream";
/// connection::classify maps each to errc::upstream_protocol_error.
enum class framing_error {
    /// `101 Switching Protocols`: we never ask for an upgrade (RFC 9110 §15.2.2), and the
    /// bytes after it are not HTTP/1.1.
    switching_protocols = 1,
    /// More than max_interim_responses interim heads before the final response.
    too_many_interim_responses,
    /// A reused connection had unread bytes or was closed by the peer right before our
    /// request: those bytes would have been read as our answer.
    unread_bytes_before_request,
};

const boost::system::error_category& framing_category() noexcept;
boost::system::error_code make_error_code(framing_error e) noexcept;

/// What to do with a complete response head.
enum class head_kind {
    final_response,  ///< the answer: read its body
    interim,         ///< a 1xx other than 101: discard it, read the next head from what is left
    refused,         ///< the exchange fails with head_sequence::error()
};

std::ostream& operator<<(std::ostream& os, head_kind k);

/// The heads of one exchange, in order. All heads together (interim ones and the final one)
/// stay within one header limit, and every wait for them stays within the exchange's one
/// deadline (the caller's), so interim heads cannot stretch an exchange in time or memory.
/// Pure; one per exchange. Not thread-safe.
class head_sequence {
public:
    explicit head_sequence(std::uint32_t header_limit) noexcept : left_(header_limit) {}

    /// The header limit for the parser of the next head: what is left of the limit after
    /// the interim heads already read.
    std::uint32_t header_limit() const noexcept { return left_; }

    /// Classifies a complete head with `status` that took `bytes` bytes (as consumed by its
    /// parser; Beast treats a 1xx as a complete message without a body).
    head_kind on_head(unsigned status, std::size_t bytes) noexcept;

    /// Interim heads skipped so far.
    unsigned interim_responses() const noexcept { return interim_; }

    /// Why the last head was refused; empty otherwise.
    boost::system::error_code error() const noexcept { return error_; }

private:
    std::uint32_t left_;
    unsigned interim_ = 0;
    boost::system::error_code error_;
};

/// How the final response ended, as its parser and the connection saw it.
struct final_framing {
    /// parser.keep_alive(): HTTP/1.1 without `Connection: close` (RFC 9112 §9.3), and not
    /// close-delimited.
    bool keep_alive = false;
    /// parser.need_eof(): the body ran until the connection closed (no Content-Length, not
    /// chunked, RFC 9112 §6.3 rule 8).
    bool need_eof = false;
    /// Bytes beyond the response had already been received when it completed.
    bool trailing_bytes = false;
};

/// The connection may carry another exchange: the response was delimited by its own framing
/// (Content-Length, chunked, or a status without content), both sides keep the connection,
/// and nothing beyond the response arrived. Anything else is closed, never pooled.
constexpr bool may_reuse(const final_framing& f) noexcept {
    return f.keep_alive && !f.need_eof && !f.trailing_bytes;
}

}  // namespace imagegate::upstream

template <>
struct boost::system::is_error_code_enum<imagegate::upstream::framing_error> : std::true_type {};
