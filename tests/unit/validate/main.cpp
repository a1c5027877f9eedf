// Test module of unit_validate: the simdjson checks of upstream answers.
#define BOOST_TEST_MODULE unit_validate
#include <boost/test/unit_test.hpp>
