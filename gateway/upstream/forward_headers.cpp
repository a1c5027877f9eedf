// Header allowlists of forwarded calls; see forward_headers.hpp.
#include "gateway/upstream/forward_headers.hpp"

#include "gateway/upstream/headers.hpp"

#include <array>

namespace imagegate::upstream {

namespace {

namespace http = boost::beast::http;

/// The first value of `name`, if it may be sent on.
std::string_view first_safe(const http::fields& f, std::string_view name) {
    const auto it = f.find(boost::beast::string_view(name.data(), name.size()));
    if (it == f.end()) {
        return {};
    }
    const std::string_view v(it->value().data(), it->value().size());
    if (v.empty() || v.size() > max_forwarded_header_bytes || !is_header_safe(v)) {
        return {};
    }
    return v;
}

void append_line(std::string& out, std::string_view name, std::string_view value) {
    if (value.empty()) {
        return;
    }
    out.append(name).append(": ").append(value).append("\r\n");
}

}  // namespace

std::string forward_request_headers(const http::fields& client) {
    std::string out;
    append_line(out, "Content-Type", first_safe(client, "Content-Type"));
    append_line(out, "Accept", first_safe(client, "Accept"));
    return out;
}

forward_head forward_response_head(const http::fields& upstream) {
    forward_head h;
    static constexpr std::array<std::string_view, 5> passed = {
        "Content-Type", "Retry-After", "Ratelimit", "Ratelimit-Policy", "cf-ray"};
    for (const auto name : passed) {
        append_line(h.header_lines, name, first_safe(upstream, name));
    }
    h.retry_after = keep_header_value(first_safe(upstream, "Retry-After"));
    h.ratelimit = keep_header_value(first_safe(upstream, "Ratelimit"));
    h.ratelimit_policy = keep_header_value(first_safe(upstream, "Ratelimit-Policy"));
    return h;
}

std::string forward_request_head(const forward_request& req, std::string_view path,
                                 std::string_view fixed, std::string_view credential) {
    const auto method = http::to_string(req.method);
    std::string out;
    out.reserve(method.size() + path.size() + fixed.size() + credential.size() +
                req.header_lines.size() + 64);
    out.append(method.data(), method.size()).append(" ").append(path).append(" HTTP/1.1\r\n");
    out.append(fixed).append(credential).append(req.header_lines);
    if (req.has_body && req.content_length) {
        out.append("Content-Length: ").append(std::to_string(*req.content_length)).append("\r\n");
    } else if (req.has_body) {
        out.append("Transfer-Encoding: chunked\r\n");
    } else if (req.method == http::verb::post || req.method == http::verb::put ||
               req.method == http::verb::patch) {
        out.append("Content-Length: 0\r\n");
    }
    out.append("\r\n");
    return out;
}

}  // namespace imagegate::upstream
