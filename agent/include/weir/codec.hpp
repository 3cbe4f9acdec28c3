// Newline-delimited input: framing of reads into whole lines, and decoding of lines into
// events (`json`: one object a line; `text`: the line in a `message` field). Shared by
// every source that reads byte streams (stdin, file, HTTP bodies).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "weir/event.hpp"
#include "weir/json.hpp"

namespace weir {

enum class Codec { Json, Text };

struct DecodeRejection {
  std::uint64_t line = 0;  // 1-based line number in the stream
  std::string reason;
  std::string raw;         // the line (cut to its first 4 KiB)
};

// Decodes complete lines. Empty and whitespace-only lines are skipped; a trailing '\r' is
// removed. A line that cannot be decoded becomes a rejection and never affects another.
class LineDecoder {
 public:
  // A line longer than `max_line_bytes` (0: no limit) is rejected whole.
  explicit LineDecoder(Codec codec, std::size_t max_line_bytes = 0, std::string message_field = "message");

  // Decodes [data, data+size), which holds whole lines (the last may lack its '\n').
  // `readable` bytes from `data` may be read (for simdjson's padding). Strings of the
  // events may point into the data, so the caller makes the batch retain its buffer.
  // With `line_starts`, the offset of each event's line (`base` + its position in data) is
  // appended, one per event added.
  void decode(const char* data, std::size_t size, std::size_t readable, EventBatch& batch,
              std::vector<DecodeRejection>& rejected, std::vector<std::uint64_t>* line_starts = nullptr,
              std::uint64_t base = 0);

  void decode_line(std::string_view line, std::size_t readable, EventBatch& batch,
                   std::vector<DecodeRejection>& rejected);

  std::uint64_t line_number() const { return line_; }  // lines seen so far
  void set_line_number(std::uint64_t lines) { line_ = lines; }
  // Text events point into the input (the batch must retain it); JSON ones are copied.
  bool points_into_input() const { return codec_ == Codec::Text; }
  // A decoder of the same settings, with a parser of its own (for another thread).
  std::unique_ptr<LineDecoder> another() const {
    return std::make_unique<LineDecoder>(codec_, max_line_bytes_, message_field_);
  }
  std::string too_long_reason() const;

 private:
  JsonParser parser_;
  Codec codec_;
  std::size_t max_line_bytes_;
  std::string message_field_;
  std::uint64_t line_ = 0;
};

// Decodes a whole text of lines (test input) as a stream reader would: a copy of it, padded,
// is retained by the batch (text events point into it).
void decode_text(std::string_view text, Codec codec, std::size_t max_line_bytes, EventBatch& batch,
                 std::vector<DecodeRejection>& rejected);

// Lines LineStream::accept() framed, taken out of the stream (take_accepted) to be decoded
// by another decoder, possibly on another thread, while the stream reads on.
struct AcceptedLines {
  std::shared_ptr<InputChunk> chunk;  // null: none
  // [from, to) of the chunk; `stable` bytes from `from` are written (simdjson may read past a
  // line's end, but never into a read in flight).
  std::size_t from = 0, to = 0, stable = 0;
  std::uint64_t consumed_before = 0;  // stream offset of `from`
  std::uint64_t first_line = 0;       // lines of the stream before `from`
};

// Turns a stream of reads into decoded batches: reads go into padded chunks, complete
// lines are decoded in place (events point into the chunk, which the batch retains), the
// partial last line carries into the next chunk, and a line longer than max_line_bytes is
// rejected whole, not split.
class LineStream {
 public:
  LineStream(Codec codec, std::size_t max_line_bytes, std::size_t chunk_bytes = 256 * 1024,
             std::string message_field = "message");

  // Where the next read goes, and how many bytes fit.
  char* read_space(std::size_t& available);
  // `count` bytes were read into read_space(): decode every line they complete.
  // With `line_starts`, each event's line offset in the stream is appended (see LineDecoder).
  void commit(std::size_t count, EventBatch& batch, std::vector<DecodeRejection>& rejected,
              std::vector<std::uint64_t>* line_starts = nullptr) {
    accept(count, rejected);
    decode_accepted(batch, rejected, line_starts);
  }
  // commit() in two steps, so a reader can start the next read in between (read-ahead: the
  // next read fills the chunk, or a new one, while these lines decode). accept() frames the
  // lines `count` bytes complete; decode_accepted() decodes them, and must be called before
  // the next accept(). The next read_space() never overlaps bytes accepted and not decoded.
  void accept(std::size_t count, std::vector<DecodeRejection>& rejected);
  void decode_accepted(EventBatch& batch, std::vector<DecodeRejection>& rejected,
                       std::vector<std::uint64_t>* line_starts = nullptr);
  // Or: the accepted lines taken out, so the next accept() may come before they are decoded
  // (with decode() and a decoder of the caller's: another() of a decoder like the stream's).
  AcceptedLines take_accepted();
  static void decode(const AcceptedLines& lines, LineDecoder& decoder, EventBatch& batch,
                     std::vector<DecodeRejection>& rejected, std::vector<std::uint64_t>* line_starts = nullptr);
  std::unique_ptr<LineDecoder> another_decoder() const { return decoder_.another(); }
  // End of input: decode the last line even without its newline.
  void finish(EventBatch& batch, std::vector<DecodeRejection>& rejected,
              std::vector<std::uint64_t>* line_starts = nullptr);

  std::uint64_t line_number() const { return lines_; }  // lines accepted so far
  // The chunk read_space() points into: a read in flight on another thread holds it, so
  // the memory outlives the stream if the source goes away first.
  const std::shared_ptr<InputChunk>& chunk() const { return chunk_; }
  std::uint64_t bytes_consumed() const { return consumed_; }  // through the last complete line

 private:
  void start_chunk(std::size_t minimum_free);

  LineDecoder decoder_;
  std::size_t max_line_bytes_;
  std::size_t chunk_bytes_;
  std::shared_ptr<InputChunk> chunk_;
  std::size_t line_start_ = 0;  // first byte of the incomplete line in chunk_
  std::size_t filled_ = 0;      // bytes of chunk_ holding data
  bool discarding_ = false;     // inside an oversized line: drop bytes up to its newline
  std::uint64_t consumed_ = 0;
  std::uint64_t lines_ = 0;  // newlines accepted (the line numbers of rejections)
  AcceptedLines accepted_;   // accepted and not yet decoded (or taken)
};

}  // namespace weir
