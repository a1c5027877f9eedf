#include "gateway/core/check.hpp"

#include <cstdio>
#include <cstdlib>

namespace imagegate::detail {

void check_failed(const char* condition, const char* message, const char* file, int line) noexcept {
    // stderr is unbuffered; the log's stdout may hold lines that belong before this one.
    std::fflush(stdout);
    std::fprintf(stderr, "imagegate: internal check failed: %s (%s) at %s:%d\n", message, condition,
                 file, line);
    std::abort();
}

}  // namespace imagegate::detail
