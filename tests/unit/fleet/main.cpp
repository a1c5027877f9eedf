#define BOOST_TEST_MODULE unit_fleet
#include <boost/test/unit_test.hpp>
