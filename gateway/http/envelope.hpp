// Cloudflare-style JSON envelopes for the errors the gateway itself produces:
// {"success":false,"errors":[{"code":N,"message":"…"}],"messages":[],"result":null}.
#pragma once

#include "gateway/core/errc.hpp"

#include <string>
#include <string_view>

namespace imagegate::gateway {

/// The envelope body for `e` (its documented code and client-safe message).
std::string error_envelope(errc e);

/// The envelope body with an explicit code and message (message is JSON-escaped).
std::string error_envelope(std::uint32_t code, std::string_view message);

/// Appends `s` to `out` as the contents of a JSON string (quotes not included).
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace imagegate::gateway
