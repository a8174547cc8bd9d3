// Built with GNU extensions on (CMakeLists.txt), unlike the main suite: a latency whose count
// is a 128-bit integer, which g++'s default mode (gnu++17) gives std::chrono.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "promotion_gates.hpp"

namespace {

__extension__ using uint128 = unsigned __int128;
__extension__ using int128 = __int128;

template <class Rep>
std::string refused(Rep count) {
  try {
    (void)promotion_gates::detail::nanos(std::chrono::duration<Rep, std::nano>(count));
  } catch (const promotion_gates::Error& e) {
    EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_ARGUMENT) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "not refused";
  return {};
}

const std::string kRule = " ns: a latency must be finite, at least 0 and below 2^64 ns";

TEST(WideRep, A128BitCountPast2To64IsRefusedNotWrapped) {
  // 2^64 + 7 was cast to 7.
  const uint128 past = (uint128{1} << 64) + 7;
  EXPECT_EQ(refused(past), "invalid latency = 18446744073709551623" + kRule);
  EXPECT_EQ(refused(static_cast<int128>(past)), "invalid latency = 18446744073709551623" + kRule);
  constexpr auto most = std::numeric_limits<std::uint64_t>::max();
  EXPECT_EQ(promotion_gates::detail::nanos(std::chrono::duration<uint128, std::nano>(most)),
            most);
}

TEST(WideRep, ANegative128BitCountIsShownInDecimal) {
  // std::to_string has no overload for __int128: this did not compile.
  EXPECT_EQ(refused(int128{-1}), "invalid latency = -1" + kRule);
  const int128 least = -(int128{1} << 126) * 2;  // -2^127
  EXPECT_EQ(refused(least),
            "invalid latency = -170141183460469231731687303715884105728" + kRule);
}

}  // namespace
