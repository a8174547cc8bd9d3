// How the binding reads a text the library copies out (detail::read_text) when the text grows
// between two calls, as a rollback history does while the sync thread applies another
// process's rollbacks.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "promotion_gates.hpp"

namespace {

using promotion_gates::Error;
using promotion_gates::detail::read_text;
using promotion_gates::detail::text_tries;

// A text one byte longer than every buffer it is given is asked for text_tries times, then
// refused naming the call.
TEST(ReadText, GivesUpOnATextThatKeepsGrowing) {
  int calls = 0;
  try {
    read_text("pgate_rollback_history_json", [&](char*, std::size_t cap, std::size_t* len) {
      ++calls;
      *len = cap + 1;
      return PGATE_STATUS_BUFFER_TOO_SMALL;
    });
    FAIL() << "read a text that kept growing";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), PGATE_STATUS_BUFFER_TOO_SMALL);
    EXPECT_EQ(std::string(e.what()).rfind(
                  "pgate_rollback_history_json: the text kept growing: 8 tries", 0),
              0u)
        << e.what();
  }
  EXPECT_EQ(calls, text_tries);
}

// A text growing by less than the slack between two calls is read on the second.
TEST(ReadText, ReadsATextGrowingALittleOnTheSecondCall) {
  int calls = 0;
  const std::string text =
      read_text("pgate_changes_json", [&](char* buf, std::size_t cap, std::size_t* len) {
        ++calls;
        *len = 1000 + 100 * static_cast<std::size_t>(calls);
        if (*len > cap) {
          return PGATE_STATUS_BUFFER_TOO_SMALL;
        }
        std::memset(buf, 'x', *len);
        return PGATE_STATUS_OK;
      });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(text, std::string(1200, 'x'));
}

}  // namespace
