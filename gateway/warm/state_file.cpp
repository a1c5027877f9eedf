// The warm state file's text: format_state and the strict parse_state (state_file.hpp).
#include "gateway/warm/state_file.hpp"

#include "gateway/image/route.hpp"
#include "gateway/warm/page.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace imagegate::warm {
namespace {

/// The fields of a job line. Each is required exactly once.
enum class field : std::uint8_t {
    account,
    state,
    per_page,
    position,
    pages,
    stored,
    invalid,
    refused,
    calls,
    total,
    l2_written,
    l2_failed,
};
constexpr std::array<std::string_view, 12> field_names{
    "account", "state",   "per_page", "position", "pages",      "stored",
    "invalid", "refused", "calls",    "total",    "l2_written", "l2_failed"};

constexpr std::string_view job_prefix = "job ";
constexpr std::size_t max_field_name = 32;

bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

// Printable ASCII without the space (the field separator).
bool is_value_char(char c) { return c > ' ' && c < 0x7f; }

// A decimal count: 1..20 digits, no sign, no overflow.
std::optional<std::uint64_t> parse_count(std::string_view v) {
    std::uint64_t n = 0;
    if (v.empty() || v.size() > 20) {
        return std::nullopt;
    }
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size()) {
        return std::nullopt;
    }
    return n;
}

// Sets one known field of `j` from `v`; the reason when `v` is refused.
std::optional<std::string> set_field(field f, std::string_view v, job_progress& j) {
    const auto name = std::string(field_names[static_cast<std::size_t>(f)]);
    switch (f) {
    case field::account:
        if (!gateway::is_account_id(v)) {
            return "account is not 32 lowercase hexadecimal characters";
        }
        j.account = std::string(v);
        return std::nullopt;
    case field::state:
        if (const auto s = parse_job_state(v)) {
            j.state = *s;
            return std::nullopt;
        }
        return "state is not a job state";
    case field::position:
        if (!v.empty() && !is_continuation_token(v)) {
            return "position is not a continuation token";
        }
        j.position = std::string(v);
        return std::nullopt;
    case field::total:
        if (v.empty()) {
            j.total.reset();
            return std::nullopt;
        }
        if (const auto n = parse_count(v); n && *n <= max_state_total) {
            j.total = *n;
            return std::nullopt;
        }
        return "total is not an image count";
    default: break;
    }
    const auto n = parse_count(v);
    if (!n) {
        return name + " is not a count";
    }
    switch (f) {
    case field::per_page:
        if (*n < min_per_page || *n > max_per_page) {
            return "per_page is not from 10 to 10000";
        }
        j.per_page = static_cast<std::size_t>(*n);
        break;
    case field::pages: j.pages = *n; break;
    case field::stored: j.stored = *n; break;
    case field::invalid: j.invalid = *n; break;
    case field::refused: j.refused = *n; break;
    case field::calls: j.calls = *n; break;
    case field::l2_written: j.l2_written = *n; break;
    case field::l2_failed: j.l2_failed = *n; break;
    default: break;
    }
    return std::nullopt;
}

// One job line (without its newline); the reason when it is refused.
std::optional<std::string> parse_job(std::string_view line, job_progress& j) {
    if (line.size() > max_state_line_bytes) {
        return "line longer than 2048 bytes";
    }
    if (!line.starts_with(job_prefix)) {
        return "not a job line";
    }
    line.remove_prefix(job_prefix.size());
    std::array<bool, field_names.size()> seen{};
    while (!line.empty()) {
        const auto space = line.find(' ');
        const std::string_view item = line.substr(0, space);
        line = space == std::string_view::npos ? std::string_view() : line.substr(space + 1);
        if (space != std::string_view::npos && line.empty()) {
            return "line ends with a space";
        }
        const auto eq = item.find('=');
        if (eq == std::string_view::npos || eq == 0 || eq > max_field_name) {
            return "a field is not name=value";
        }
        const std::string_view name = item.substr(0, eq);
        const std::string_view value = item.substr(eq + 1);
        if (!std::all_of(name.begin(), name.end(), is_name_char) ||
            !std::all_of(value.begin(), value.end(), is_value_char)) {
            return "a field name or value has a byte it may not have";
        }
        const auto known = std::find(field_names.begin(), field_names.end(), name);
        if (known == field_names.end()) {
            continue;  // a newer writer's field: ignored
        }
        const auto i = static_cast<std::size_t>(known - field_names.begin());
        if (seen[i]) {
            return std::string(name) + " given twice";
        }
        seen[i] = true;
        if (auto why = set_field(static_cast<field>(i), value, j)) {
            return why;
        }
    }
    for (std::size_t i = 0; i < seen.size(); ++i) {
        if (!seen[i]) {
            return std::string(field_names[i]) + " missing";
        }
    }
    if (j.state == job_state::done && !j.position.empty()) {
        return "a done job has a position";
    }
    return std::nullopt;
}

}  // namespace

parsed_state parse_state(std::string_view text) {
    parsed_state out;
    const auto refuse_file = [&](std::string reason) {
        out.refusals.push_back({0, std::move(reason)});
        return out;
    };
    if (text.size() > max_state_bytes) {
        return refuse_file("larger than 256 KiB");
    }
    const auto first = text.find('\n');
    const std::string_view header = text.substr(0, first);
    if (header != state_header) {
        constexpr std::string_view magic = "imagegate-warm-state ";
        return refuse_file(header.starts_with(magic)
                               ? "written in another version of the format"
                               : "not an imagegate warm state file (no header line)");
    }
    if (first == std::string_view::npos) {
        return out;  // a header without its newline: no jobs either way
    }
    text.remove_prefix(first + 1);
    for (std::size_t n = 2; !text.empty(); ++n) {
        const auto nl = text.find('\n');
        const std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
        if (nl == std::string_view::npos) {
            out.refusals.push_back({n, "no newline at its end (a truncated file?)"});
            break;
        }
        job_progress j;
        if (auto why = parse_job(line, j)) {
            out.refusals.push_back({n, std::move(*why)});
            continue;
        }
        if (std::any_of(out.jobs.begin(), out.jobs.end(),
                        [&](const job_progress& o) { return o.account == j.account; })) {
            out.refusals.push_back({n, "a second job for the same account"});
            continue;
        }
        if (out.jobs.size() >= max_jobs) {
            out.refusals.push_back({n, "more than 64 jobs"});
            continue;
        }
        out.jobs.push_back(std::move(j));
    }
    return out;
}

std::string format_state(const std::vector<job_progress>& jobs) {
    std::string out(state_header);
    out += '\n';
    const auto add = [&out](std::string_view name, std::string_view value) {
        out += ' ';
        out += name;
        out += '=';
        out += value;
    };
    const auto count = [&add](std::string_view name, std::uint64_t n) {
        add(name, std::to_string(n));
    };
    for (std::size_t i = 0; i < jobs.size() && i < max_jobs; ++i) {
        const auto& j = jobs[i];
        out += "job";
        add("account", j.account);
        add("state", to_string(j.state));
        count("per_page", j.per_page);
        add("position", j.position);
        count("pages", j.pages);
        count("stored", j.stored);
        count("invalid", j.invalid);
        count("refused", j.refused);
        count("calls", j.calls);
        add("total", j.total ? std::to_string(*j.total) : std::string());
        count("l2_written", j.l2_written);
        count("l2_failed", j.l2_failed);
        out += '\n';
    }
    return out;
}

}  // namespace imagegate::warm
