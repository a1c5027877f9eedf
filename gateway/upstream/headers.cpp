#include "gateway/upstream/headers.hpp"

#include <boost/asio/ip/address.hpp>

namespace imagegate::upstream {

std::string host_header_value(std::string_view host, std::uint16_t port, bool tls) {
    std::string out;
    const bool v6 = host.find(':') != std::string_view::npos && host.front() != '[';
    if (v6) {
        out += '[';
    }
    out += host;
    if (v6) {
        out += ']';
    }
    const std::uint16_t default_port = tls ? 443 : 80;
    if (port != default_port) {
        out += ':';
        out += std::to_string(port);
    }
    return out;
}

std::string join_target(std::string_view base_path, std::string_view target) {
    while (!base_path.empty() && base_path.back() == '/') {
        base_path.remove_suffix(1);
    }
    std::string out;
    out.reserve(base_path.size() + target.size() + 1);
    if (!base_path.empty() && base_path.front() != '/') {
        out += '/';
    }
    out += base_path;
    if (target.empty() || target.front() != '/') {
        out += '/';
    }
    out += target;
    return out;
}

bool is_ip_literal(std::string_view host) {
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
    }
    boost::system::error_code ec;
    (void)boost::asio::ip::make_address(std::string(host), ec);
    return !ec;
}

unsigned status_class(unsigned status) noexcept {
    if (status < 100 || status > 599) {
        return 0;
    }
    return status / 100;
}

bool is_header_safe(std::string_view value) noexcept {
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\t') || u == 0x7f) {
            return false;
        }
    }
    return true;
}

bool is_target_safe(std::string_view target) noexcept {
    if (target.empty() || target.front() != '/') {
        return false;
    }
    for (const char c : target) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) {
            return false;
        }
    }
    return true;
}

std::string get_request_head(std::string_view target,
                             std::initializer_list<std::string_view> fields) {
    constexpr std::string_view get = "GET ";
    constexpr std::string_view version = " HTTP/1.1\r\n";
    std::size_t size = get.size() + target.size() + version.size() + 2;
    for (const auto f : fields) {
        size += f.size();
    }
    std::string out;
    out.reserve(size);
    out.append(get).append(target).append(version);
    for (const auto f : fields) {
        out.append(f);
    }
    out.append("\r\n");
    return out;
}

std::string keep_header_value(std::string_view value) {
    if (value.size() > max_kept_header_bytes || !is_header_safe(value)) {
        return {};
    }
    return std::string(value);
}

}  // namespace imagegate::upstream
