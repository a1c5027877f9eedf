// The gateway's version, for User-Agent, --help and /metrics. Kept equal to project(VERSION)
// in CMakeLists.txt (a configure-time check enforces it).
#pragma once

#include <string_view>

namespace imagegate {
inline constexpr std::string_view version = "0.1.0";
}
