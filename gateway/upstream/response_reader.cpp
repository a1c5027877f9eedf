#include "gateway/upstream/response_reader.hpp"

#include "gateway/upstream/headers.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include <string_view>
#include <utility>

namespace imagegate::upstream {

namespace http = boost::beast::http;

namespace {

// Bits of response_reader::seen_.
constexpr unsigned seen_content_type = 1U << 0;
constexpr unsigned seen_retry_after = 1U << 1;
constexpr unsigned seen_ratelimit = 1U << 2;
constexpr unsigned seen_ratelimit_policy = 1U << 3;

std::string_view sv(boost::beast::string_view s) noexcept { return {s.data(), s.size()}; }

}  // namespace

std::string response_reader::take_body() {
    if (body_.capacity() < body_.size() + body_padding) {
        body_.reserve(body_.size() + body_padding);
    }
    return std::move(body_);
}

void response_reader::on_request_impl(http::verb, string_view, string_view, int, error_code&) {
    // basic_parser<false> parses responses only; never called.
}

void response_reader::on_response_impl(int code, string_view, int, error_code&) {
    // The parser accepts exactly three digits, so 0..999.
    head_.status = static_cast<unsigned>(code);
}

void response_reader::on_field_impl(http::field name, string_view name_string, string_view value,
                                    error_code&) {
    const auto keep = [&](unsigned bit, std::string& out) {
        if ((seen_ & bit) == 0) {
            seen_ |= bit;
            out = keep_header_value(sv(value));
        }
    };
    switch (name) {
    case http::field::content_type: keep(seen_content_type, head_.content_type); return;
    case http::field::retry_after: keep(seen_retry_after, head_.retry_after); return;
    case http::field::unknown:
        // Beast 1.81 has no enum values for the RateLimit fields
        // (draft-ietf-httpapi-ratelimit-headers); names are case-insensitive.
        if (boost::beast::iequals(name_string, "RateLimit")) {
            keep(seen_ratelimit, head_.ratelimit);
        } else if (boost::beast::iequals(name_string, "RateLimit-Policy")) {
            keep(seen_ratelimit_policy, head_.ratelimit_policy);
        }
        return;
    default: return;
    }
}

void response_reader::on_header_impl(error_code&) {}

void response_reader::on_body_init_impl(const boost::optional<std::uint64_t>& content_length,
                                        error_code&) {
    // The parser has refused a Content-Length over body_limit before this call, so the
    // reservation is bounded by the configured limit.
    if (content_length) {
        body_.reserve(static_cast<std::size_t>(*content_length) + body_padding);
    }
}

std::size_t response_reader::on_body_impl(string_view body, error_code&) {
    body_.append(body.data(), body.size());
    return body.size();
}

void response_reader::on_chunk_header_impl(std::uint64_t, string_view, error_code&) {}

std::size_t response_reader::on_chunk_body_impl(std::uint64_t, string_view body, error_code&) {
    // basic_parser counts chunk bytes against body_limit before handing them over.
    body_.append(body.data(), body.size());
    return body.size();
}

void response_reader::on_finish_impl(error_code&) {}

}  // namespace imagegate::upstream
