#include "gateway/shield/time.hpp"

namespace imagegate::shield {

std::chrono::seconds retry_after_seconds(duration wait) noexcept {
    if (wait <= duration::zero()) {
        return std::chrono::seconds::zero();
    }
    return std::chrono::ceil<std::chrono::seconds>(wait);
}

}  // namespace imagegate::shield
