// The YAML config loader with ${ENV} interpolation and the graph checks, on any text: errors
// are values, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "topology/graph.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace weir;
  std::string text(reinterpret_cast<const char*>(data), size);
  config::Diagnostics diagnostics;
  auto env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "SET") return std::string("value");
    return std::nullopt;
  };
  auto cfg = config::load_text(text, "fuzz.yaml", diagnostics, env);
  if (diagnostics.ok()) topology::build(std::move(cfg), diagnostics);
  return 0;
}
