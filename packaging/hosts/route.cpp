// A C++ host of an installed promotion-gates: route_cpp GATE PERCENT ID routes one request on
// a canary of PERCENT % and prints "canary BUCKET" or "stable BUCKET". Built by CMakeLists.txt
// beside it through find_package(promotion_gates).
#include <iostream>
#include <string>

#include <promotion_gates.hpp>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " GATE PERCENT ID\n";
    return 2;
  }
  const std::string config = std::string(R"({"gate": ")") + argv[1] +
                             R"(", "environment": {"canary": {"traffic_percent": )" + argv[2] +
                             "}}}";
  try {
    const auto gate = promotion_gates::Gate::create(config);
    const auto decision = gate.route(argv[3]);
    std::cout << (decision.is_canary ? "canary " : "stable ") << decision.bucket << "\n";
  } catch (const promotion_gates::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
  return 0;
}
