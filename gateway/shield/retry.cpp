#include "gateway/shield/retry.hpp"

#include <ostream>

namespace imagegate::shield {

bool is_retryable(const failed_attempt& failure) noexcept {
    if (failure.attempt >= max_attempts) {
        return false;
    }
    switch (failure.kind) {
    case failure_kind::connect_failed:
    case failure_kind::stale_connection: return true;
    case failure_kind::status:
        return failure.status == 502 || failure.status == 503 || failure.status == 504;
    case failure_kind::exchange_failed: return false;
    }
    return false;
}

duration jittered_backoff(duration base, std::uint64_t random_bits) noexcept {
    if (base <= duration::zero()) {
        return duration::zero();
    }
    const auto span = static_cast<std::uint64_t>(base.count()) + 1;
    return base + duration(static_cast<duration::rep>(random_bits % span));
}

retry_decision decide_retry(const failed_attempt& failure, time_point now, time_point deadline,
                            const retry_options& options, std::uint64_t random_bits) noexcept {
    if (!is_retryable(failure)) {
        return {};
    }
    const duration backoff = jittered_backoff(options.base_backoff, random_bits);
    // A retry that starts at the deadline cannot finish before it: the client gets its 502/504
    // now rather than after a wasted upstream call.
    if (deadline <= now || backoff >= deadline - now) {
        return {};
    }
    return {.retry = true, .backoff = backoff};
}

std::ostream& operator<<(std::ostream& os, failure_kind k) {
    switch (k) {
    case failure_kind::connect_failed: return os << "connect_failed";
    case failure_kind::stale_connection: return os << "stale_connection";
    case failure_kind::status: return os << "status";
    case failure_kind::exchange_failed: return os << "exchange_failed";
    }
    return os << "failure_kind(" << static_cast<int>(k) << ")";
}

std::ostream& operator<<(std::ostream& os, const failed_attempt& f) {
    os << "{" << f.kind;
    if (f.kind == failure_kind::status) {
        os << " " << f.status;
    }
    return os << " attempt=" << f.attempt << "}";
}

std::ostream& operator<<(std::ostream& os, const retry_decision& d) {
    return os << (d.retry ? "{retry" : "{give_up") << " backoff=" << d.backoff.count() << "ns}";
}

}  // namespace imagegate::shield
