// Builds the process logger from [log] settings and formats access-log lines.
#pragma once

#include "config/settings.hpp"

#include <memory>

namespace spdlog {
class logger;
}

namespace imagegate::gateway {

struct exchange_record;

/// A stdout logger (thread-safe sink) with the configured level and format. Throws
/// std::invalid_argument on an unknown level (config::check rejects those first).
std::shared_ptr<spdlog::logger> make_logger(const config::log_settings& s);

/// One access-log line at info: request id, method, path (no query string: it may carry
/// anything), status, cache status, duration, bytes. Never headers.
void log_access(spdlog::logger& log, const exchange_record& rec);

}  // namespace imagegate::gateway
