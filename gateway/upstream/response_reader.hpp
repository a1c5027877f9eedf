// The upstream response parser: Beast's HTTP/1.1 parser (framing, limits, chunked decoding)
// with a sink that keeps only what the gateway uses — the status, four header values and
// the body — instead of a field list with every header the upstream sent.
#pragma once

#include <boost/beast/http/basic_parser.hpp>

#include <cstdint>
#include <string>

namespace imagegate::upstream {

/// simdjson 3.0.1's SIMDJSON_PADDING: spare capacity the validator needs after the body so
/// it can parse in place. Spelled here so this library does not depend on simdjson.
inline constexpr std::size_t body_padding = 64;

/// What a response_reader keeps. Header values follow keep_header_value(): the first
/// occurrence of each name, empty when absent, longer than max_kept_header_bytes or holding
/// control characters.
struct response_head {
    unsigned status = 0;
    std::string content_type;
    std::string retry_after;
    std::string ratelimit;
    std::string ratelimit_policy;
};

/// Drive it with http::async_read_header / http::async_read like any Beast parser. Limits:
/// header_limit() and body_limit() of basic_parser, set by the caller. The body is reserved
/// once from Content-Length (already checked against body_limit by the parser) with
/// body_padding spare bytes, so it does not reallocate while read and simdjson can parse it
/// in place; take_body() restores that padding for bodies of unknown length.
class response_reader final : public boost::beast::http::basic_parser<false> {
public:
    response_reader() = default;

    const response_head& head() const noexcept { return head_; }
    response_head take_head() noexcept { return std::move(head_); }
    /// The body, with `capacity() >= size() + body_padding`.
    std::string take_body();

private:
    using string_view = boost::beast::string_view;
    using error_code = boost::beast::error_code;

    void on_request_impl(boost::beast::http::verb, string_view, string_view, int,
                         error_code&) override;
    void on_response_impl(int code, string_view reason, int version, error_code& ec) override;
    void on_field_impl(boost::beast::http::field name, string_view name_string, string_view value,
                       error_code& ec) override;
    void on_header_impl(error_code& ec) override;
    void on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                           error_code& ec) override;
    std::size_t on_body_impl(string_view body, error_code& ec) override;
    void on_chunk_header_impl(std::uint64_t size, string_view extensions, error_code& ec) override;
    std::size_t on_chunk_body_impl(std::uint64_t remain, string_view body, error_code& ec) override;
    void on_finish_impl(error_code& ec) override;

    response_head head_;
    std::string body_;
    // Which of the four kept headers were seen (the first occurrence wins, as msg[name] of a
    // Beast field list would return it).
    unsigned seen_ = 0;
};

}  // namespace imagegate::upstream
