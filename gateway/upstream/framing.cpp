#include "gateway/upstream/framing.hpp"

#include <ostream>
#include <string>

namespace imagegate::upstream {

namespace {

class framing_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "imagegate.upstream"; }

    std::string message(int ev) const override {
        switch (static_cast<framing_error>(ev)) {
        case framing_error::switching_protocols: return "upstream switched protocols (101)";
        case framing_error::too_many_interim_responses:
            return "too many interim (1xx) responses from the upstream";
        case framing_error::unread_bytes_before_request:
            return "reused upstream connection had unread bytes or was closed";
        }
        return "unknown upstream framing error";
    }
};

}  // namespace

const boost::system::error_category& framing_category() noexcept {
    static const framing_category_impl c;
    return c;
}

boost::system::error_code make_error_code(framing_error e) noexcept {
    return {static_cast<int>(e), framing_category()};
}

std::ostream& operator<<(std::ostream& os, head_kind k) {
    switch (k) {
    case head_kind::final_response: return os << "final_response";
    case head_kind::interim: return os << "interim";
    case head_kind::refused: return os << "refused";
    }
    return os << "unknown";
}

head_kind head_sequence::on_head(unsigned status, std::size_t bytes) noexcept {
    if (status / 100 != 1) {
        return head_kind::final_response;
    }
    if (status == 101) {
        error_ = make_error_code(framing_error::switching_protocols);
        return head_kind::refused;
    }
    // RFC 9110 §15.2: a client must be able to parse and skip 1xx responses it did not expect
    // (100 Continue, 102 Processing, 103 Early Hints, and codes not yet defined).
    if (interim_ == max_interim_responses) {
        error_ = make_error_code(framing_error::too_many_interim_responses);
        return head_kind::refused;
    }
    ++interim_;
    // The parser refused a head over its limit, so `bytes <= left_`; the guard keeps the
    // arithmetic safe whatever the caller passes.
    left_ = bytes >= left_ ? 0 : left_ - static_cast<std::uint32_t>(bytes);
    return head_kind::interim;
}

}  // namespace imagegate::upstream
