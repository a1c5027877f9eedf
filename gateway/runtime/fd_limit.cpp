// See fd_limit.hpp.
#include "gateway/runtime/fd_limit.hpp"

#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <algorithm>
#include <limits>
#include <ostream>
#include <stdexcept>

namespace imagegate::gateway {
namespace {

constexpr std::uint64_t nr_open_default = 1 << 20;

std::uint64_t from_rlim(rlim_t v) noexcept {
    return v == RLIM_INFINITY ? std::numeric_limits<std::uint64_t>::max()
                              : static_cast<std::uint64_t>(v);
}

open_files_limit current_limit() {
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        return {};
    }
    return {.soft = from_rlim(lim.rlim_cur), .hard = from_rlim(lim.rlim_max)};
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const fd_needs& n) {
    return os << "{data=" << n.data << " admin=" << n.admin << " upstream=" << n.upstream
              << " fixed=" << n.fixed << '}';
}

std::ostream& operator<<(std::ostream& os, const fd_plan& p) {
    return os << "{data_connections=" << p.data_connections << " capped=" << p.capped
              << " too_low=" << p.too_low << '}';
}

fd_needs fd_needs_of(const config::settings& s, unsigned threads) {
    return {.data = s.server.max_connections,
            .admin = admin_max_connections,
            .upstream = std::uint64_t{threads} * s.upstream.max_connections,
            // 3 stdio + 2 listening sockets + 2 spares + 2 signal pipe + 3 per event loop,
            // and 32 for files read and resolver sockets opened while serving.
            .fixed = 9 + 3 * std::uint64_t{threads} + 32};
}

fd_plan plan_fds(const fd_needs& needs, std::uint64_t limit) noexcept {
    if (needs.total() <= limit) {
        return {.data_connections = needs.data};
    }
    const std::uint64_t others = needs.admin + needs.upstream + needs.fixed;
    const std::uint64_t room = limit > others ? limit - others : 0;
    return {.data_connections = room, .capped = true, .too_low = room < min_data_connections};
}

std::pair<open_files_limit, open_files_limit> raise_open_files_limit() {
    const open_files_limit before = current_limit();
    const std::uint64_t target = std::min(before.hard, nr_open_default);
    if (before.soft < target) {
        rlimit lim{};
        lim.rlim_cur = static_cast<rlim_t>(target);
        lim.rlim_max = before.hard == std::numeric_limits<std::uint64_t>::max()
                           ? RLIM_INFINITY
                           : static_cast<rlim_t>(before.hard);
        // Failure leaves the limit as it was; the plan below then works with that.
        (void)::setrlimit(RLIMIT_NOFILE, &lim);
    }
    return {before, current_limit()};
}

std::uint64_t apply_fd_limit(const config::settings& s, unsigned threads, spdlog::logger& log) {
    const auto [before, after] = raise_open_files_limit();
    const fd_needs needs = fd_needs_of(s, threads);
    const fd_plan plan = plan_fds(needs, after.soft);
    if (after.soft != before.soft) {
        log.info("open-files limit raised from {} to {} (the hard limit)", before.soft, after.soft);
    }
    if (plan.too_low) {
        throw std::runtime_error(
            "the open-files limit (" + std::to_string(after.soft) + ", hard " +
            std::to_string(after.hard) + ") leaves fewer than " +
            std::to_string(min_data_connections) + " descriptors for data connections: the " +
            "admin listener needs " + std::to_string(needs.admin) + ", the upstream pools " +
            std::to_string(needs.upstream) + " (server.threads x upstream.max_connections) and " +
            "the process " + std::to_string(needs.fixed) +
            "; raise the limit (ulimit -n, systemd LimitNOFILE=) or lower "
            "upstream.max_connections or server.threads");
    }
    if (plan.capped) {
        log.warn(
            "open-files limit {} is below what the configuration may open ({}: "
            "server.max_connections {} + admin {} + upstream pools {} + {} for the process): "
            "serving at most {} data connections, more get 503; raise the limit (ulimit -n, "
            "systemd LimitNOFILE=) to at least {} or lower server.max_connections",
            after.soft, needs.total(), needs.data, needs.admin, needs.upstream, needs.fixed,
            plan.data_connections, needs.total());
    }
    return plan.data_connections;
}

}  // namespace imagegate::gateway
