#include "config/settings.hpp"

namespace imagegate::config {
std::string describe(const settings&) { return {}; }
}  // namespace imagegate::config
