// Builds the process logger from [log] settings (text or one JSON object per line, every
// message escaped so no line can be split or forged) and writes access-log lines.
#pragma once

#include "config/settings.hpp"

#include <memory>
#include <string_view>

namespace spdlog {
class logger;
}

namespace imagegate::gateway {

struct exchange_record;

/// The name of the logger access lines go through: the JSON format renders its messages as
/// structured members (see access_log) instead of one "msg" string.
inline constexpr std::string_view access_logger_name = "imagegate.access";

/// A stdout logger (thread-safe sink) with the configured level and format. Throws
/// std::invalid_argument on an unknown level (config::check rejects those first).
///
/// Text: `2026-01-02T03:04:05.678+00:00 info [1234] message`, where the message has every
/// control character, C1 control, line separator, bidirectional override and invalid UTF-8
/// byte escaped, whatever the call site formatted into it.
/// JSON: `{"time":"…","level":"info","thread":1234,"msg":"…"}` with the message a proper JSON
/// string; always valid UTF-8, one object per line.
std::shared_ptr<spdlog::logger> make_logger(const config::log_settings& s);

/// One access line at info per exchange: listener, request id, method, target without its
/// query string (it may carry anything), status, cache status, duration, bytes. Never
/// headers. Text: `access data req=… GET "/path" status=200 cache="hit" dur_ms=0.123
/// bytes=512`, the target escaped and quoted. JSON: each field its own member (numbers as numbers).
/// Owned by the composition root; thread-safe (spdlog's sinks are).
class access_log {
public:
    /// Writes through a logger named access_logger_name sharing `log`'s sinks and level.
    access_log(const std::shared_ptr<spdlog::logger>& log, const config::log_settings& s);
    void write(const exchange_record& rec) const;

private:
    std::shared_ptr<spdlog::logger> log_;
    bool json_ = false;
};

}  // namespace imagegate::gateway
