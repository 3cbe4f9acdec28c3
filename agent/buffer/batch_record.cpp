#include "buffer/batch_record.hpp"

#include <cstring>

#include <fmt/format.h>

namespace weir::buffer {

namespace {
constexpr std::string_view kMarksPrefix = R"({"s":)";
}

void encode_batch(const EventBatch& batch, const std::vector<RecordMark>& marks, ByteBuffer& out) {
  if (!marks.empty()) {
    out.append(kMarksPrefix);
    out.push_back('[');
    for (std::size_t i = 0; i < marks.size(); ++i) {
      if (i) out.push_back(',');
      out.push_back('[');
      write_json_string(marks[i].owner, out);
      out.append(fmt::format(",{}]", marks[i].batch));
    }
    out.append("]}\n");
  }
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

std::vector<RecordMark> read_marks(std::string_view payload) {
  std::vector<RecordMark> marks;
  if (!payload.starts_with(kMarksPrefix)) return marks;
  std::string_view line = payload.substr(0, payload.find('\n'));
  Arena arena;
  JsonParser parser;
  auto parsed = parser.parse(line, arena);
  const Value* list = parsed.ok() ? parsed.value().find("s") : nullptr;
  if (list == nullptr || !list->is_array()) return marks;
  for (const Value& mark : list->elements()) {
    if (!mark.is_array()) continue;
    auto parts = mark.elements();
    if (parts.size() != 2 || !parts[0].is_string()) continue;
    std::uint64_t batch = parts[1].is_uint() ? parts[1].as_uint() : parts[1].is_int() ? static_cast<std::uint64_t>(parts[1].as_int()) : 0;
    marks.push_back({std::string(parts[0].as_string()), batch});
  }
  return marks;
}

Status decode_batch(std::string_view payload, std::size_t readable, JsonParser& parser, EventBatch& batch) {
  Arena& arena = batch.arena();
  std::size_t at = 0, line_number = 0;
  if (payload.starts_with(kMarksPrefix)) {  // the marks line: not an event
    std::size_t newline = payload.find('\n');
    at = newline == std::string_view::npos ? payload.size() : newline + 1;
  }
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
