// The condition language (filter, route, weir test): compiled from any text, and a compiled
// condition evaluated on a few events.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "weir/condition.hpp"
#include "weir/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace weir;
  auto condition = Condition::compile(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!condition.ok()) return 0;
  static const char* kEvents[] = {
      R"({"scope":"click:element","user_id":7,"payload":"{\"a\":1}","n":1.5,"tags":["a","b"],"o":{"p":null}})",
      R"({})", R"({"scope":null,"user_id":"7","n":-1e308})"};
  Arena arena;
  JsonParser parser;
  for (const char* text : kEvents) {
    Event event{parser.parse(text, arena).value(), Value::null()};
    (void)condition.value().matches(event);
  }
  return 0;
}
