#include "weir/codec.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace weir {

namespace {
constexpr std::size_t kRawLimit = 4096;

// memchr (vectorised in glibc) from line to line: std::count over the bytes was 5% of the
// CVAT benchmark at -O2, where GCC does not vectorise it.
std::uint64_t count_newlines(const char* p, const char* end) {
  std::uint64_t count = 0;
  while (p < end) {
    const void* nl = std::memchr(p, '\n', static_cast<std::size_t>(end - p));
    if (nl == nullptr) break;
    ++count;
    p = static_cast<const char*>(nl) + 1;
  }
  return count;
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}
}  // namespace

LineDecoder::LineDecoder(Codec codec, std::size_t max_line_bytes, std::string message_field)
    : codec_(codec), max_line_bytes_(max_line_bytes), message_field_(std::move(message_field)) {}

std::string LineDecoder::too_long_reason() const {
  return fmt::format("line longer than max_line_bytes ({} bytes)", max_line_bytes_);
}

void LineDecoder::decode_line(std::string_view line, std::size_t readable, EventBatch& batch,
                              std::vector<DecodeRejection>& rejected) {
  ++line_;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return;
  if (max_line_bytes_ && line.size() > max_line_bytes_) {
    rejected.push_back({line_, too_long_reason(), std::string(line.substr(0, kRawLimit))});
    return;
  }
  Arena& arena = batch.arena();
  if (codec_ == Codec::Text) {
    Event& event = batch.add_event(1);
    std::string_view text = valid_utf8(line, arena);
    // The key is copied: the batch may outlive this decoder (HTTP bodies decode with a
    // decoder of their own).
    event.fields.append_member(arena, arena.copy(message_field_), Value::string_view(text));
    batch.add_byte_size(line.size());
    return;
  }
  if (is_blank(line)) return;
  auto parsed = parser_.parse(line, readable, arena);
  if (!parsed.ok()) {
    rejected.push_back({line_, parsed.error().message(), std::string(line.substr(0, kRawLimit))});
    return;
  }
  if (!parsed.value().is_object()) {
    rejected.push_back({line_, fmt::format("expected a JSON object, got {}", kind_name(parsed.value().kind())),
                        std::string(line.substr(0, kRawLimit))});
    return;
  }
  batch.events().push_back(Event{parsed.value(), Value::null()});
  batch.add_byte_size(line.size());
}

void LineDecoder::decode(const char* data, std::size_t size, std::size_t readable, EventBatch& batch,
                         std::vector<DecodeRejection>& rejected, std::vector<std::uint64_t>* line_starts,
                         std::uint64_t base) {
  const char* p = data;
  const char* end = data + size;
  while (p < end) {
    const char* nl = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
    const char* line_end = nl ? nl : end;
    std::size_t before = batch.size();
    decode_line(std::string_view(p, static_cast<std::size_t>(line_end - p)),
                readable - static_cast<std::size_t>(p - data), batch, rejected);
    if (line_starts != nullptr && batch.size() != before) line_starts->push_back(base + static_cast<std::uint64_t>(p - data));
    p = nl ? nl + 1 : end;
  }
}

LineStream::LineStream(Codec codec, std::size_t max_line_bytes, std::size_t chunk_bytes, std::string message_field)
    : decoder_(codec, max_line_bytes, std::move(message_field)), max_line_bytes_(max_line_bytes), chunk_bytes_(chunk_bytes) {}

void LineStream::start_chunk(std::size_t minimum_free) {
  std::size_t partial = chunk_ ? filled_ - line_start_ : 0;
  auto next = std::make_shared<InputChunk>(std::max(chunk_bytes_, partial + minimum_free));
  if (partial) std::memcpy(next->bytes.get(), chunk_->bytes.get() + line_start_, partial);
  chunk_ = std::move(next);
  line_start_ = 0;
  filled_ = partial;
}

char* LineStream::read_space(std::size_t& available) {
  // Reads smaller than 1/16 of a chunk cost more in syscalls than a fresh chunk costs.
  if (!chunk_ || chunk_->capacity - filled_ < chunk_bytes_ / 16) start_chunk(chunk_bytes_ / 2);
  available = chunk_->capacity - filled_;
  return chunk_->bytes.get() + filled_;
}

void LineStream::accept(std::size_t count, std::vector<DecodeRejection>& rejected) {
  char* base = chunk_->bytes.get();
  std::size_t scan_from = filled_;
  filled_ += count;
  if (discarding_) {
    // Inside an oversized line: skip to its newline.
    char* nl = static_cast<char*>(std::memchr(base + scan_from, '\n', filled_ - scan_from));
    if (!nl) {
      line_start_ = filled_;
      consumed_ += count;
      return;
    }
    discarding_ = false;
    ++lines_;
    std::size_t after = static_cast<std::size_t>(nl - base) + 1;
    consumed_ += after - scan_from;
    line_start_ = after;
    scan_from = after;
  }
  // The last newline in the new bytes ends the decodable region.
  const char* last_nl = nullptr;
  for (const char* p = base + filled_; p > base + scan_from;) {
    --p;
    if (*p == '\n') {
      last_nl = p;
      break;
    }
  }
  if (last_nl) {
    std::size_t region_end = static_cast<std::size_t>(last_nl - base) + 1;
    accepted_ = AcceptedLines{chunk_, line_start_, region_end, filled_ - line_start_, consumed_, lines_};
    lines_ += count_newlines(base + line_start_, base + region_end);
    consumed_ += region_end - line_start_;
    line_start_ = region_end;
  }
  // One byte of slack: a '\r' before the newline is not part of the line's length.
  if (max_line_bytes_ && filled_ - line_start_ > max_line_bytes_ + 1) {
    discarding_ = true;
    rejected.push_back({lines_ + 1, decoder_.too_long_reason(),
                        std::string(base + line_start_, std::min<std::size_t>(kRawLimit, filled_ - line_start_))});
    consumed_ += filled_ - line_start_;
    line_start_ = filled_;
  }
}

void LineStream::decode_accepted(EventBatch& batch, std::vector<DecodeRejection>& rejected,
                                 std::vector<std::uint64_t>* line_starts) {
  decode(take_accepted(), decoder_, batch, rejected, line_starts);
}

AcceptedLines LineStream::take_accepted() {
  AcceptedLines taken = std::move(accepted_);
  accepted_ = AcceptedLines{};
  return taken;
}

void LineStream::decode(const AcceptedLines& lines, LineDecoder& decoder, EventBatch& batch,
                        std::vector<DecodeRejection>& rejected, std::vector<std::uint64_t>* line_starts) {
  if (!lines.chunk) return;
  std::size_t before = batch.size();
  decoder.set_line_number(lines.first_line);
  decoder.decode(lines.chunk->bytes.get() + lines.from, lines.to - lines.from, lines.stable, batch, rejected,
                 line_starts, lines.consumed_before);
  if (decoder.points_into_input() && batch.size() != before) batch.retain(lines.chunk);
}

void LineStream::finish(EventBatch& batch, std::vector<DecodeRejection>& rejected,
                        std::vector<std::uint64_t>* line_starts) {
  if (!chunk_ || discarding_ || filled_ == line_start_) return;
  std::size_t before = batch.size();
  decoder_.set_line_number(lines_);
  ++lines_;
  decoder_.decode(chunk_->bytes.get() + line_start_, filled_ - line_start_,
                  chunk_->capacity + InputChunk::padding - line_start_, batch, rejected, line_starts, consumed_);
  if (decoder_.points_into_input() && batch.size() != before) batch.retain(chunk_);
  consumed_ += filled_ - line_start_;
  line_start_ = filled_;
}

void decode_text(std::string_view text, Codec codec, std::size_t max_line_bytes, EventBatch& batch,
                 std::vector<DecodeRejection>& rejected) {
  auto copy = std::make_shared<std::string>(text);
  copy->append(InputChunk::padding, '\0');
  LineDecoder decoder(codec, max_line_bytes);
  decoder.decode(copy->data(), text.size(), copy->size(), batch, rejected);
  batch.retain(copy);
}

}  // namespace weir
