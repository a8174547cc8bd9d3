// promotion_gates.hpp compiles on its own: this translation unit includes it first and
// nothing else, so a missing #include in the header breaks the build.
#include "promotion_gates.hpp"

// Called by a test, so that this translation unit is linked as well as compiled.
std::string_view header_alone_version();
std::string_view header_alone_version() { return promotion_gates::Gate::version(); }
