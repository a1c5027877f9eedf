// The method × path router: pattern compilation and matching, the routing decision, and the
// default 404/405 answers.
#include "gateway/http/router.hpp"

#include "gateway/core/request_target.hpp"

#include <cstring>
#include <stdexcept>

namespace imagegate::gateway {

namespace {

// The path of a target the session accepted (origin- or absolute-form), without the query.
// Origin-form, the usual case, needs no scan: check_framing refused any target
// target_path_start refuses before routing.
std::string_view path_of(std::string_view target) noexcept {
    const std::size_t start = target.starts_with('/') ? 0 : target_path_start(target);
    if (start == std::string_view::npos) {
        return {};
    }
    target.remove_prefix(start);
    return target.substr(0, target.find('?'));
}

}  // namespace

std::string method_set::allow_line() const {
    std::string out = "Allow: ";
    bool first = true;
    for (unsigned i = 1; i <= static_cast<unsigned>(http::verb::unlink); ++i) {
        const auto v = static_cast<http::verb>(i);
        if (!allows(v)) {
            continue;
        }
        if (!first) {
            out += ", ";
        }
        first = false;
        const auto name = http::to_string(v);
        out.append(name.data(), name.size());
    }
    out += "\r\n";
    return out;
}

path_pattern::path_pattern(std::string_view pattern) : text_(pattern) {
    if (!pattern.starts_with('/')) {
        throw std::invalid_argument("route pattern must start with '/': " + text_);
    }
    std::size_t placeholders = 0;
    std::string literal;
    for (std::size_t i = 0; i < pattern.size();) {
        const char c = pattern[i];
        if (c != '{' && c != '*') {
            literal.push_back(c);
            ++i;
            continue;
        }
        // A placeholder is a whole segment: after a '/', before a '/' or the end.
        if (pattern[i - 1] != '/') {
            throw std::invalid_argument("a placeholder must be a whole segment: " + text_);
        }
        if (!literal.empty()) {
            pieces_.push_back({kind::literal, std::move(literal)});
            literal.clear();
        }
        if (++placeholders > path_params::capacity) {
            throw std::invalid_argument("too many placeholders: " + text_);
        }
        if (c == '*') {
            if (i + 1 != pattern.size()) {
                throw std::invalid_argument("'*' must end the pattern: " + text_);
            }
            pieces_.push_back({kind::rest, {}});
            break;
        }
        const std::size_t close = pattern.find('}', i);
        if (close == std::string_view::npos || close == i + 1 ||
            (close + 1 < pattern.size() && pattern[close + 1] != '/')) {
            throw std::invalid_argument("a placeholder must be a whole segment: " + text_);
        }
        const bool nonempty = pattern[close - 1] == '+';
        pieces_.push_back({nonempty ? kind::nonempty : kind::segment, {}});
        i = close + 1;
    }
    if (!literal.empty()) {
        pieces_.push_back({kind::literal, std::move(literal)});
    }
    leading_ = pieces_.front().text;  // a pattern starts with '/': a literal
}

bool path_pattern::match(std::string_view path, path_params& out) const noexcept {
    // Pointers and memcmp/memchr rather than substr and find: this runs on every request.
    const char* at = path.data();
    const char* const end = at + path.size();
    std::size_t n = 0;
    for (const auto& p : pieces_) {
        switch (p.k) {
        case kind::literal: {
            const std::size_t len = p.text.size();
            if (static_cast<std::size_t>(end - at) < len ||
                std::memcmp(at, p.text.data(), len) != 0) {
                return false;
            }
            at += len;
            break;
        }
        case kind::segment:
        case kind::nonempty: {
            // `at` is past a literal ending in '/', never null here.
            const void* slash = std::memchr(at, '/', static_cast<std::size_t>(end - at));
            const char* const stop = slash != nullptr ? static_cast<const char*>(slash) : end;
            if (p.k == kind::nonempty && stop == at) {
                return false;
            }
            out.values[n++] = std::string_view(at, static_cast<std::size_t>(stop - at));
            at = stop;
            break;
        }
        case kind::rest:
            out.values[n++] = std::string_view(at, static_cast<std::size_t>(end - at));
            at = end;
            break;
        }
    }
    out.size = n;
    return at == end;
}

router& router::add(method_set methods, std::string_view pattern, std::string_view label,
                    route_handler handler, route_options options) {
    routes_.push_back(
        route{methods, path_pattern(pattern), label, std::move(handler), std::move(options)});
    return *this;
}

router& router::set_fallback(route_handler handler, std::string_view label, route_options options) {
    fallback_.emplace(route{method_set::any(), path_pattern("/*"), label, std::move(handler),
                            std::move(options)});
    return *this;
}

router& router::set_refusal(refusal_fn refusal) {
    refusal_ = std::move(refusal);
    return *this;
}

router::decision router::decide(http::verb method, std::string_view target) const {
    decision d;
    // The leading literal of a pattern holds no '?', so the prefix screen needs no query
    // scan: the target itself (origin-form, the usual case) or its path will do.
    const std::string_view start = target.starts_with('/') ? target : path_of(target);
    std::string_view path;  // without the query, found when a whole pattern is matched
    bool have_path = false;
    for (const auto& r : routes_) {
        if (r.options.handler_checks_path && r.methods.allows(method)) {
            if (r.pattern.matches_leading_literal(start)) {
                d.found = &r;
                d.params.size = 0;
                return d;
            }
            continue;
        }
        if (!have_path) {
            path = path_of(target);
            have_path = true;
        }
        if (!r.pattern.match(path, d.params)) {
            continue;
        }
        if (r.methods.allows(method)) {
            d.found = &r;
            return d;
        }
        // Known path, other method: a 405 unless a later route takes the method. The first
        // such route names it; every such route adds its methods to Allow.
        if (!r.options.owns || r.options.owns(target)) {
            if (d.allowed.empty()) {
                d.label = r.label;
            }
            d.allowed |= r.methods;
        }
    }
    if (!d.allowed.empty()) {
        d.refusal = errc::method_not_allowed;
        return d;
    }
    if (fallback_) {
        d.found = &*fallback_;
        return d;
    }
    d.refusal = errc::route_not_found;
    return d;
}

reply router::refuse(const decision& d) const {
    const std::string allow =
        d.refusal == errc::method_not_allowed ? d.allowed.allow_line() : std::string();
    if (refusal_) {
        return refusal_(d.refusal, d.label, allow);
    }
    reply r = make_error_reply(d.refusal, allow);
    r.route = d.refusal == errc::method_not_allowed ? d.label : std::string_view("not_found");
    return r;
}

handler_result router::dispatch(request req) const {
    const decision d = decide(req.method, req.target);
    return run(d, req);
}

}  // namespace imagegate::gateway
