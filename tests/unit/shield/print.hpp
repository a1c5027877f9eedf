// How Boost.Test prints the shield's time values in failure messages: steady-clock
// time_points and optional waits have no standard operator<<.
#pragma once

#include "gateway/shield/time.hpp"

#include <boost/test/tools/detail/print_helper.hpp>

#include <optional>
#include <ostream>

namespace boost::test_tools::tt_detail {

template <>
struct print_log_value<imagegate::shield::time_point> {
    void operator()(std::ostream& os, const imagegate::shield::time_point& t) {
        os << "steady@" << t.time_since_epoch();
    }
};

template <>
struct print_log_value<std::optional<imagegate::shield::duration>> {
    void operator()(std::ostream& os, const std::optional<imagegate::shield::duration>& d) {
        if (d) {
            os << *d;
        } else {
            os << "nullopt";
        }
    }
};

}  // namespace boost::test_tools::tt_detail
