// A batch as the payload of one disk-buffer record: one JSON line per event,
// {"f": fields} or {"f": fields, "m": metadata}. JSON keeps a buffer readable with
// ordinary tools and reuses the pipeline's own encoder and simdjson decoder.
#pragma once

#include <string_view>

#include "weir/buffer.hpp"
#include "weir/event.hpp"
#include "weir/json.hpp"
#include "weir/result.hpp"

namespace weir::buffer {

void encode_batch(const EventBatch& batch, ByteBuffer& out);
// Decodes `payload` (with `readable` bytes from its start that may be read) into `batch`.
// Every line must decode: a record passed its CRC, so a line that does not is a bug.
Status decode_batch(std::string_view payload, std::size_t readable, JsonParser& parser, EventBatch& batch);

}  // namespace weir::buffer
