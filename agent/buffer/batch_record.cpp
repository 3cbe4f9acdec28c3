#include "buffer/batch_record.hpp"

#include <cstring>

#include <fmt/format.h>

namespace weir::buffer {

void encode_batch(const EventBatch& batch, ByteBuffer& out) {
  for (const Event& event : batch.events()) {
    out.append(R"({"f":)");
    write_json(event.fields, out);
    if (!event.metadata.is_null()) {
      out.append(R"(,"m":)");
      write_json(event.metadata, out);
    }
    out.append("}\n");
  }
}

Status decode_batch(std::string_view payload, std::size_t readable, JsonParser& parser, EventBatch& batch) {
  Arena& arena = batch.arena();
  std::size_t at = 0, line_number = 0;
  while (at < payload.size()) {
    const char* newline = static_cast<const char*>(std::memchr(payload.data() + at, '\n', payload.size() - at));
    std::size_t end = newline ? static_cast<std::size_t>(newline - payload.data()) : payload.size();
    ++line_number;
    auto value = parser.parse(payload.substr(at, end - at), readable - at, arena);
    if (!value.ok()) return Error(fmt::format("event {} of the record: {}", line_number, value.error().message()));
    const Value* fields = value.value().find("f");
    if (!fields || !fields->is_object()) return Error(fmt::format("event {} of the record has no fields", line_number));
    const Value* metadata = value.value().find("m");
    batch.events().push_back(Event{*fields, metadata ? *metadata : Value::null()});
    at = end + 1;
  }
  batch.set_byte_size(payload.size());
  return {};
}

}  // namespace weir::buffer
