#include "body_decoder.hpp"

#include <fmt/format.h>

#include "weir/json.hpp"

namespace weir::plugins {

namespace {

constexpr std::size_t kRawLimit = 4096;

std::string_view trim_front(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\r' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  return text;
}

}  // namespace

void BodyDecoder::decode(const std::string& body, EpochNanos received_at, EventBatch& batch,
                         std::vector<BodyRejection>& rejected) {
  switch (codec_) {
    case BodyCodec::Text: return decode_lines(body, Codec::Text, batch, rejected);
    case BodyCodec::Ndjson: return decode_lines(body, Codec::Json, batch, rejected);
    case BodyCodec::CvatClient: return decode_cvat(body, received_at, batch, rejected);
    case BodyCodec::Json: break;
  }
  std::string_view start = trim_front(body);
  if (start.empty()) return;
  if (start.front() == '[') {
    auto parsed = parser_.parse(body, batch.arena());
    if (!parsed.ok()) {
      rejected.push_back({0, parsed.error().message(), body.substr(0, kRawLimit)});
      return;
    }
    return decode_array(parsed.value(), batch, rejected);
  }
  // One object, or several lines of them: a single parse tells which.
  auto parsed = parser_.parse(body, batch.arena());
  if (parsed.ok() && parsed.value().is_object()) {
    batch.events().push_back(Event{parsed.value(), Value::null()});
    batch.add_byte_size(body.size());
    return;
  }
  decode_lines(body, Codec::Json, batch, rejected);
}

void BodyDecoder::decode_lines(const std::string& body, Codec codec, EventBatch& batch,
                               std::vector<BodyRejection>& rejected) {
  LineDecoder decoder(codec);
  std::vector<DecodeRejection> lines;
  decoder.decode(body.data(), body.size(), body.size(), batch, lines);
  for (auto& r : lines) rejected.push_back({r.line, std::move(r.reason), std::move(r.raw)});
}

void BodyDecoder::decode_array(const Value& array, EventBatch& batch, std::vector<BodyRejection>& rejected) {
  std::uint64_t index = 0;
  for (const Value& item : array.elements()) {
    ++index;
    if (!item.is_object()) {
      rejected.push_back({index, fmt::format("element {}: expected a JSON object, got {}", index, kind_name(item.kind())),
                          to_json(item).substr(0, kRawLimit)});
      continue;
    }
    batch.events().push_back(Event{item, Value::null()});
  }
}

void BodyDecoder::decode_cvat(const std::string& body, EpochNanos received_at, EventBatch& batch,
                              std::vector<BodyRejection>& rejected) {
  Arena& arena = batch.arena();
  auto parsed = parser_.parse(body, arena);
  if (!parsed.ok()) {
    rejected.push_back({0, parsed.error().message(), body.substr(0, kRawLimit)});
    return;
  }
  const Value& root = parsed.value();
  const Value* events = root.find("events");
  if (!root.is_object() || events == nullptr || !events->is_array()) {
    rejected.push_back({0, "a CVAT client body is an object with an \"events\" array", body.substr(0, kRawLimit)});
    return;
  }
  // The client's clock may be off: CVAT moves every event by (receive time - send time).
  EpochNanos correction = 0;
  if (const Value* sent = root.find("timestamp"); sent != nullptr && !sent->is_null()) {
    auto sent_at = parse_timestamp(*sent);
    if (!sent_at.ok()) {
      rejected.push_back({0, "body timestamp: " + sent_at.error().message(), body.substr(0, kRawLimit)});
      return;
    }
    // Both fit 1677..2262, their difference may not (found by fuzz_http_body).
    if (__builtin_sub_overflow(received_at, sent_at.value(), &correction)) {
      rejected.push_back({0, "body timestamp: the client's clock is too far off to correct (over 292 years)",
                          body.substr(0, kRawLimit)});
      return;
    }
  }
  std::uint64_t index = 0;
  for (Value item : events->elements()) {
    ++index;
    if (!item.is_object()) {
      rejected.push_back({index, fmt::format("event {}: expected a JSON object, got {}", index, kind_name(item.kind())),
                          to_json(item).substr(0, kRawLimit)});
      continue;
    }
    const Value* ts = item.find("timestamp");
    auto at = ts ? parse_timestamp(*ts) : Result<EpochNanos>(Error("it has no timestamp"));
    if (!at.ok()) {
      rejected.push_back({index, fmt::format("event {}: {}", index, at.error().message()), to_json(item).substr(0, kRawLimit)});
      continue;
    }
    EpochNanos corrected;
    if (__builtin_add_overflow(at.value(), correction, &corrected)) {
      rejected.push_back({index, fmt::format("event {}: corrected by the client's clock offset it is past the years 1677..2262", index),
                          to_json(item).substr(0, kRawLimit)});
      continue;
    }
    ByteBuffer shifted;
    format_iso8601(corrected, 6, shifted);
    item.set(arena, "timestamp", Value::string(arena, shifted.view()));
    item.set(arena, "source", Value::string_view("client"));
    batch.events().push_back(Event{item, Value::null()});
  }
}

}  // namespace weir::plugins
