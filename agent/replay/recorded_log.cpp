#include "replay/recorded_log.hpp"

#include <zlib.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace weir::replay {

namespace {
constexpr std::size_t kReadBytes = 1 << 20;
}

// The decompressor state of a gzip or zstd log.
struct RecordedLog::Inflater {
  z_stream zlib{};
  bool zlib_ready = false;
  ZSTD_DStream* zstd = nullptr;
  bool frame_open = false;  // input taken since the last complete gzip member or zstd frame
  ~Inflater() {
    if (zlib_ready) inflateEnd(&zlib);
    if (zstd != nullptr) ZSTD_freeDStream(zstd);
  }
};

Result<std::unique_ptr<RecordedLog>> RecordedLog::open(const std::string& path) {
  std::unique_ptr<RecordedLog> log(new RecordedLog());
  log->name_ = path;
  log->file_ = std::fopen(path.c_str(), "rb");
  if (log->file_ == nullptr) return Error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  if (std::fseek(log->file_, 0, SEEK_END) == 0) {
    long size = std::ftell(log->file_);
    if (size > 0) log->total_bytes_ = static_cast<std::uint64_t>(size);
    std::fseek(log->file_, 0, SEEK_SET);
  }
  unsigned char magic[4] = {0, 0, 0, 0};
  std::size_t got = std::fread(magic, 1, sizeof magic, log->file_);
  std::fseek(log->file_, 0, SEEK_SET);
  if (got >= 2 && magic[0] == 0x1f && magic[1] == 0x8b) {
    log->format_ = Format::Gzip;
    log->inflater_ = std::make_unique<Inflater>();
    if (inflateInit2(&log->inflater_->zlib, 16 + MAX_WBITS) != Z_OK) return Error("zlib: cannot start inflating");
    log->inflater_->zlib_ready = true;
  } else if (got == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd) {
    log->format_ = Format::Zstd;
    log->inflater_ = std::make_unique<Inflater>();
    log->inflater_->zstd = ZSTD_createDStream();
    if (log->inflater_->zstd == nullptr) return Error("zstd: cannot start decompressing");
  }
  return log;
}

std::unique_ptr<RecordedLog> RecordedLog::from_text(std::string text) {
  std::unique_ptr<RecordedLog> log(new RecordedLog());
  log->name_ = "<inline>";
  log->total_bytes_ = log->bytes_read_ = text.size();
  log->pending_ = std::move(text);
  log->file_done_ = true;
  return log;
}

RecordedLog::~RecordedLog() {
  if (file_ != nullptr) std::fclose(file_);
}

Result<bool> RecordedLog::fill() {
  // Compact what was handed out.
  pending_.erase(0, pending_at_);
  pending_at_ = 0;
  if (raw_at_ == raw_.size() && !file_done_) {
    raw_.resize(kReadBytes);
    std::size_t n = std::fread(raw_.data(), 1, raw_.size(), file_);
    if (n < raw_.size()) {
      if (std::ferror(file_)) return Error(fmt::format("reading {}: {}", name_, std::strerror(errno)));
      file_done_ = true;
    }
    raw_.resize(n);
    raw_at_ = 0;
    bytes_read_ += n;
  }
  // At the end of the file a decompressor may still hold output from input it took.
  bool input_done = raw_at_ == raw_.size() && file_done_;
  if (input_done && format_ == Format::Plain) return false;
  std::size_t before = pending_.size();
  switch (format_) {
    case Format::Plain:
      pending_.append(raw_, raw_at_, std::string::npos);
      raw_at_ = raw_.size();
      break;
    case Format::Gzip: {
      z_stream& z = inflater_->zlib;
      z.next_in = reinterpret_cast<Bytef*>(raw_.data() + raw_at_);
      z.avail_in = static_cast<uInt>(raw_.size() - raw_at_);
      pending_.resize(before + 4 * kReadBytes);
      z.next_out = reinterpret_cast<Bytef*>(pending_.data() + before);
      z.avail_out = static_cast<uInt>(4 * kReadBytes);
      uInt offered = z.avail_in;
      int rc = inflate(&z, Z_NO_FLUSH);
      if (z.avail_in < offered) inflater_->frame_open = true;
      if (rc == Z_STREAM_END) {
        inflateReset(&z);  // another gzip member may follow (cat a.gz b.gz)
        inflater_->frame_open = false;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        return Error(fmt::format("{}: gzip: {}", name_, z.msg ? z.msg : "damaged data"));
      }
      raw_at_ = raw_.size() - z.avail_in;
      pending_.resize(before + (4 * kReadBytes - z.avail_out));
      break;
    }
    case Format::Zstd: {
      ZSTD_inBuffer in{raw_.data() + raw_at_, raw_.size() - raw_at_, 0};
      pending_.resize(before + 4 * kReadBytes);
      ZSTD_outBuffer out{pending_.data() + before, 4 * kReadBytes, 0};
      std::size_t rc = ZSTD_decompressStream(inflater_->zstd, &out, &in);
      if (ZSTD_isError(rc)) return Error(fmt::format("{}: zstd: {}", name_, ZSTD_getErrorName(rc)));
      if (in.pos > 0 || out.pos > 0) inflater_->frame_open = rc != 0;  // 0: a frame just ended
      raw_at_ += in.pos;
      pending_.resize(before + out.pos);
      break;
    }
  }
  bool more = pending_.size() > before || !input_done;
  if (!more && inflater_ && inflater_->frame_open) {
    return Error(fmt::format("{} ends in the middle of its {} stream (truncated?)", name_,
                             format_ == Format::Gzip ? "gzip" : "zstd"));
  }
  return more;
}

Result<std::size_t> RecordedLog::read_lines(std::size_t max_lines, std::string& out) {
  std::size_t lines = 0;
  while (lines < max_lines) {
    const char* start = pending_.data() + pending_at_;
    std::size_t left = pending_.size() - pending_at_;
    // Whole lines from what is decompressed.
    std::size_t taken = 0;
    while (lines < max_lines && taken < left) {
      const void* nl = std::memchr(start + taken, '\n', left - taken);
      if (nl == nullptr) break;
      taken = static_cast<std::size_t>(static_cast<const char*>(nl) - start) + 1;
      ++lines;
    }
    out.append(start, taken);
    pending_at_ += taken;
    if (lines == max_lines) break;
    auto more = fill();
    if (!more.ok()) return more.error();
    if (!more.value()) {
      if (pending_at_ < pending_.size()) {  // the last line, without its '\n'
        out.append(pending_, pending_at_, std::string::npos);
        out.push_back('\n');
        pending_at_ = pending_.size();
        ++lines;
      }
      break;
    }
  }
  return lines;
}

}  // namespace weir::replay
