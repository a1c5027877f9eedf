#include "gateway/shield/time.hpp"

#include <algorithm>
#include <ostream>

namespace imagegate::shield {

std::chrono::seconds retry_after_seconds(duration wait) noexcept {
    if (wait <= duration::zero()) {
        return std::chrono::seconds::zero();
    }
    return std::chrono::ceil<std::chrono::seconds>(wait);
}

retry_advice advise_retry(duration wait, bool held) noexcept {
    using std::chrono::milliseconds;
    using std::chrono::seconds;
    const auto s = held ? std::chrono::floor<seconds>(wait) : std::chrono::ceil<seconds>(wait);
    const auto ms =
        held ? std::chrono::floor<milliseconds>(wait) : std::chrono::ceil<milliseconds>(wait);
    return {.seconds = std::max(s, seconds(1)), .milliseconds = std::max(ms, milliseconds(1))};
}

std::ostream& operator<<(std::ostream& os, const retry_advice& a) {
    return os << "{" << a.seconds.count() << "s " << a.milliseconds.count() << "ms}";
}

}  // namespace imagegate::shield
