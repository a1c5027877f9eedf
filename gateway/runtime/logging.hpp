// Builds the process logger from [log] settings: text or one JSON object per line, every
// message escaped so no line can be split or forged.
#pragma once

#include "config/settings.hpp"

#include <memory>
#include <string_view>

namespace spdlog {
class logger;
}

namespace imagegate::gateway {

/// A stdout logger (thread-safe sink) with the configured level and format. Throws
/// std::invalid_argument on an unknown level (config::check rejects those first).
///
/// Text: `2026-01-02T03:04:05.678+00:00 info [1234] message`, where the message has every
/// control character, C1 control, line separator, bidirectional override and invalid UTF-8
/// byte escaped, whatever the call site formatted into it.
/// JSON: `{"time":"…","level":"info","thread":1234,"msg":"…"}` with the message a proper JSON
/// string; always valid UTF-8, one object per line. Lines of the logger named
/// access_logger_name (access_log.hpp) carry their fields as members instead.
std::shared_ptr<spdlog::logger> make_logger(const config::log_settings& s);

/// Applies log.level and log.format to a logger made by make_logger (a reload). The sinks
/// are shared with its clones (the access log), so they change too. Thread-safe (spdlog's
/// level is atomic; the formatter is swapped under the sink's lock). Throws like make_logger.
void apply_log_settings(spdlog::logger& log, const config::log_settings& s);

}  // namespace imagegate::gateway
