// A batch as the payload of one disk-buffer record: one JSON line per event,
// {"f": fields} or {"f": fields, "m": metadata}, after a first line {"s": [[owner, batch],
// ...]} when the batch came through stateful transforms (its RecordMarks). JSON keeps a
// buffer readable with ordinary tools and reuses the pipeline's own encoder and simdjson
// decoder.
#pragma once

#include <string_view>

#include "buffer/disk_log.hpp"
#include "weir/buffer.hpp"
#include "weir/event.hpp"
#include "weir/json.hpp"
#include "weir/result.hpp"

namespace weir::buffer {

void encode_batch(const EventBatch& batch, const std::vector<RecordMark>& marks, ByteBuffer& out);
// The marks line of a payload, if it has one.
std::vector<RecordMark> read_marks(std::string_view payload);
// Decodes `payload` (with `readable` bytes from its start that may be read) into `batch`.
// Every line must decode: a record passed its CRC, so a line that does not is a bug.
Status decode_batch(std::string_view payload, std::size_t readable, JsonParser& parser, EventBatch& batch);

}  // namespace weir::buffer
