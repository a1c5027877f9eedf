// A caller's own Cloudflare credential as the upstream client sends it (passthrough mode).
#pragma once

#include <string>

namespace imagegate::upstream {

/// A caller's own Cloudflare credential (auth.mode = "passthrough"), sent instead of the
/// configured token: `Authorization: Bearer <bearer>` when `bearer` is set, else
/// `X-Auth-Email` + `X-Auth-Key`. Checked for header-safe bytes before it gets here
/// (gateway/auth/authorizer.cpp). Never logged.
struct credential {
    std::string bearer;
    std::string email;
    std::string key;
};

}  // namespace imagegate::upstream
