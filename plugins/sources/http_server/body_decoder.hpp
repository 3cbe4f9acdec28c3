// Request bodies to events, per `decoding.codec`:
//   json        one object, an array of objects, or NDJSON (detected from the body)
//   ndjson      one object a line
//   text        one event a line, in `message`
//   cvat_client CVAT's client batch {"events": [...], "previous_event": ..., "timestamp": ...}:
//               one event per element, its timestamp moved by (receive time - body timestamp)
//               to correct the client's clock, `source` set to "client"
// Bad lines or elements are rejected one by one; the rest of the body still counts.
#pragma once

#include <string>
#include <vector>

#include "weir/codec.hpp"
#include "weir/event.hpp"
#include "weir/time.hpp"

namespace weir::plugins {

enum class BodyCodec { Json, Ndjson, Text, CvatClient };

struct BodyRejection {
  std::uint64_t line = 0;  // 1-based line (ndjson, text) or element (arrays, cvat_client); 0: the body
  std::string reason;
  std::string raw;
};

class BodyDecoder {
 public:
  explicit BodyDecoder(BodyCodec codec) : codec_(codec) {}

  // Appends the body's events to `batch`. `body` must outlive the batch (it is retained by
  // the caller for the text codec, whose events point into it).
  void decode(const std::string& body, EpochNanos received_at, EventBatch& batch, std::vector<BodyRejection>& rejected);

 private:
  void decode_lines(const std::string& body, Codec codec, EventBatch& batch, std::vector<BodyRejection>& rejected);
  void decode_array(const Value& array, EventBatch& batch, std::vector<BodyRejection>& rejected);
  void decode_cvat(const std::string& body, EpochNanos received_at, EventBatch& batch,
                   std::vector<BodyRejection>& rejected);

  BodyCodec codec_;
  JsonParser parser_;
};

}  // namespace weir::plugins
