// Whether and when a failed upstream GET is tried again: the gateway's one retry rule. At most
// once per fetch, only when the upstream did no work for us, with jittered backoff, within the
// deadline, and every attempt on its own budget token.
#pragma once

#include "gateway/shield/time.hpp"

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <random>

namespace imagegate::shield {

/// A request is sent at most twice: the first attempt and one retry. More retries multiply
/// upstream load exactly when the upstream is struggling, and every attempt that can reach the
/// upstream spends the credential's rate budget: the caller takes a foreground token (a
/// reservation) for each one like for any other upstream call.
///
/// This is the ONLY retry layer between a client request and the upstream: the upstream
/// client makes exactly one attempt per call and reports what happened (upstream/client.hpp),
/// the image fetch applies this rule (gateway/image/fetch.cpp). The client's SDK may retry
/// on its own; `x-should-retry`, `Retry-After` and the gateway's memory of failed fetches
/// keep those retries from reaching the upstream.
inline constexpr unsigned max_attempts = 2;

/// How an upstream attempt failed.
enum class failure_kind {
    connect_failed,    ///< resolve, TCP connect or TLS handshake failed: nothing was sent
    stale_connection,  ///< a reused (idle) connection failed before any response byte: most
                       ///< likely closed by the upstream while idle; retried on a new one
    status,            ///< a complete response arrived; `failed_attempt::status` says which
    exchange_failed,   ///< write/read error, timeout or unusable body after the request was
                       ///< (maybe) sent: not retried, the deadline is mostly spent and the
                       ///< upstream may have counted the call
};

struct failed_attempt {
    failure_kind kind = failure_kind::connect_failed;
    /// HTTP status of the response; only meaningful for failure_kind::status.
    unsigned status = 0;
    /// 1-based number of the attempt that failed.
    unsigned attempt = 1;

    friend bool operator==(const failed_attempt&, const failed_attempt&) = default;
};

struct retry_options {
    /// Backoff before the retry is uniform in [base, 2 * base]: jitter spreads the retries of
    /// many sessions that failed together, the floor gives a restarting upstream a moment.
    duration base_backoff = std::chrono::milliseconds(50);
};

struct retry_decision {
    /// Send the request again after `backoff`.
    bool retry = false;
    /// How long to wait before the retry; zero when not retrying.
    duration backoff{};

    friend bool operator==(const retry_decision&, const retry_decision&) = default;
};

std::ostream& operator<<(std::ostream& os, failure_kind k);
std::ostream& operator<<(std::ostream& os, const failed_attempt& f);
std::ostream& operator<<(std::ostream& os, const retry_decision& d);

/// True for the failures a retry can fix: a connect failure, a reused connection that failed
/// before any response byte (RFC 9110 §9.2.2: GET is idempotent), or 502/503/504 (a proxy or
/// the upstream said it could not serve right now). Never a 4xx: 404 and 401/403 are answers,
/// and retrying a 429 would dig the credential deeper into its block. Never other 5xx.
/// Only while `attempt < max_attempts`.
bool is_retryable(const failed_attempt& failure) noexcept;

/// `base + random_bits mod (base + 1 tick)`: uniform in [base, 2 * base] up to a modulo bias
/// of (base in ticks) / 2^64, nothing measurable. `base` <= 0 gives zero.
duration jittered_backoff(duration base, std::uint64_t random_bits) noexcept;

/// Retry if the failure is retryable and `now + backoff` is strictly before `deadline`.
/// `random_bits` is the injected randomness (any 64 uniformly random bits).
retry_decision decide_retry(const failed_attempt& failure, time_point now, time_point deadline,
                            const retry_options& options, std::uint64_t random_bits) noexcept;

/// The same with the bits drawn from `random` (e.g. a per-thread std::mt19937_64).
template <std::uniform_random_bit_generator Random>
retry_decision decide_retry(const failed_attempt& failure, time_point now, time_point deadline,
                            const retry_options& options, Random& random) {
    std::uniform_int_distribution<std::uint64_t> bits;
    return decide_retry(failure, now, deadline, options, bits(random));
}

}  // namespace imagegate::shield
