// Timestamps as events carry them: ISO-8601 and epoch-seconds text; a time that parses
// formats and parses back to itself (to the millisecond it is formatted at).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "weir/buffer.hpp"
#include "weir/time.hpp"
#include "weir/value.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace weir;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_timestamp(Value::string_view(text));
  (void)parse_epoch_seconds(text);
  if (!parsed.ok()) return 0;
  EpochNanos t = parsed.value();
  ByteBuffer out;
  format_iso8601(t, 9, out);
  auto again = parse_iso8601(out.view());
  if (!again.ok() || again.value() != t) __builtin_trap();
  return 0;
}
