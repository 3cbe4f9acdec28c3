#include "lookup_table.hpp"

#include <algorithm>
#include <charconv>
#include <deque>
#include <fstream>

#include <fmt/format.h>

#include "weir/json.hpp"

namespace weir::plugins {

namespace {

// One CSV record (RFC 4180: quoted cells may hold commas, quotes and newlines). Cells are
// views into `text`, or, when quoted, into their unescaped copies in `quoted` (a deque: its
// strings stay where they are as more are added).
bool next_record(std::string_view text, std::size_t& at, std::vector<std::string_view>& cells,
                 std::deque<std::string>& quoted) {
  cells.clear();
  quoted.clear();
  if (at >= text.size()) return false;
  auto is_delimiter = [](char c) { return c == ',' || c == '\n' || c == '\r'; };
  while (true) {
    if (at < text.size() && text[at] == '"') {
      ++at;
      std::string& cell = quoted.emplace_back();
      while (at < text.size()) {
        char c = text[at++];
        if (c == '"') {
          if (at < text.size() && text[at] == '"') {
            cell.push_back('"');
            ++at;
            continue;
          }
          break;
        }
        cell.push_back(c);
      }
      // Whatever follows the closing quote up to the delimiter is kept, as lenient readers do.
      while (at < text.size() && !is_delimiter(text[at])) cell.push_back(text[at++]);
      cells.emplace_back(cell);
    } else {
      std::size_t begin = at;
      while (at < text.size() && !is_delimiter(text[at])) ++at;
      cells.push_back(text.substr(begin, at - begin));
    }
    if (at >= text.size()) return true;
    char delimiter = text[at++];
    if (delimiter == ',') continue;
    if (delimiter == '\r' && at < text.size() && text[at] == '\n') ++at;
    return true;
  }
}

Value cell_value(std::string_view cell, Arena& arena) {
  if (cell.empty()) return Value::null();
  std::int64_t number;
  auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), number);
  if (ec == std::errc() && end == cell.data() + cell.size()) return Value::integer(number);
  return Value::string(arena, cell);
}

// The whole file in one read.
Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Error(fmt::format("cannot read lookup table {}", path));
  std::string text(static_cast<std::size_t>(in.tellg()), '\0');
  in.seekg(0);
  if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) {
    return Error(fmt::format("cannot read lookup table {}", path));
  }
  return text;
}

}  // namespace

std::string LookupTable::key_text(const Value& value) {
  if (value.is_string()) return std::string(value.as_string());
  return to_json(value);
}

// key_text() copied into `arena`, integers without a detour through a std::string.
static std::string_view stable_key_text(const Value& value, Arena& arena) {
  if (value.is_string()) return arena.copy(value.as_string());
  if (value.is_int()) {
    char digits[24];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value.as_int());
    return arena.copy(std::string_view(digits, static_cast<std::size_t>(end - digits)));
  }
  return arena.copy(to_json(value));
}

void LookupTable::reserve(std::size_t rows) {
  std::size_t slots = 16;
  while (slots < rows * 2) slots *= 2;
  rows_.reserve(rows);
  std::vector<Slot> fresh(slots);
  const std::size_t mask = slots - 1;
  for (std::size_t r = 0; r < rows_.size(); ++r) {  // rehash what is there
    std::uint64_t h = std::hash<std::string_view>{}(rows_[r].key);
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      if (fresh[i].row == 0) {
        fresh[i] = Slot{static_cast<std::uint32_t>(h >> 32), static_cast<std::uint32_t>(r + 1)};
        break;
      }
    }
  }
  slots_ = std::move(fresh);
}

void LookupTable::insert_or_assign(std::string_view key, Value value) {
  if ((rows_.size() + 1) * 2 > slots_.size()) reserve(std::max<std::size_t>(16, rows_.size() * 2));
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  const auto tag = static_cast<std::uint32_t>(h >> 32);
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    Slot& slot = slots_[i];
    if (slot.row == 0) {
      rows_.push_back(Row{key, value});
      slot = Slot{tag, static_cast<std::uint32_t>(rows_.size())};
      return;
    }
    if (slot.hash_tag == tag && rows_[slot.row - 1].key == key) {
      rows_[slot.row - 1].value = value;  // the last row of a key wins
      return;
    }
  }
}

const Value* LookupTable::find(std::string_view key) const {
  if (slots_.empty()) return nullptr;
  const std::uint64_t h = std::hash<std::string_view>{}(key);
  const auto tag = static_cast<std::uint32_t>(h >> 32);
  const std::size_t mask = slots_.size() - 1;
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    const Slot& slot = slots_[i];
    if (slot.row == 0) return nullptr;
    if (slot.hash_tag == tag && rows_[slot.row - 1].key == key) return &rows_[slot.row - 1].value;
  }
}

Result<std::shared_ptr<LookupTable>> LookupTable::load(const std::string& path, const std::string& key_column) {
  auto read = read_file(path);
  if (!read.ok()) return read.error();
  bool csv = path.size() >= 4 && path.compare(path.size() - 4, 4, ".csv") == 0;
  return parse(read.value(), csv ? Format::Csv : Format::Ndjson, key_column, path);
}

Result<std::shared_ptr<LookupTable>> LookupTable::parse(std::string_view text, Format format, const std::string& key_column,
                                                        std::string_view path) {
  auto table = std::make_shared<LookupTable>();
  Arena& arena = table->arena_;
  auto add = [&](Value row, std::size_t line) -> Status {
    const Value* key = row.find(key_column);
    if (key == nullptr || key->is_null()) {
      return Error(fmt::format("{}:{}: the row has no '{}'", path, line, key_column));
    }
    table->insert_or_assign(stable_key_text(*key, arena), row);
    return {};
  };
  if (format == Format::Csv) {
    std::size_t at = 0, line = 1;
    std::vector<std::string_view> header, cells;
    std::deque<std::string> quoted, header_quoted;
    if (!next_record(text, at, header, header_quoted)) return Error(fmt::format("{}: empty CSV (a header row is needed)", path));
    if (std::find(header.begin(), header.end(), key_column) == header.end()) {
      return Error(fmt::format("{}: no column '{}' in the header", path, key_column));
    }
    std::vector<std::string_view> names;
    for (std::string_view h : header) names.push_back(arena.copy(h));
    table->reserve(static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')));
    while (next_record(text, at, cells, quoted)) {
      ++line;
      if (cells.size() == 1 && cells[0].empty()) continue;  // blank line
      if (cells.size() != names.size()) {
        return Error(fmt::format("{}:{}: {} cells where the header has {}", path, line, cells.size(), names.size()));
      }
      Value row = Value::object(arena, static_cast<std::uint32_t>(names.size()));
      for (std::size_t i = 0; i < names.size(); ++i) row.append_member(arena, names[i], cell_value(cells[i], arena));
      if (Status s = add(row, line); !s.ok()) return s.error();
    }
  } else {
    JsonParser parser;
    std::size_t line = 0, start = 0;
    while (start < text.size()) {
      std::size_t nl = text.find('\n', start);
      std::string_view row_text(text.data() + start, (nl == std::string::npos ? text.size() : nl) - start);
      start = nl == std::string::npos ? text.size() : nl + 1;
      ++line;
      if (row_text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      auto row = parser.parse(row_text, arena);
      if (!row.ok() || !row.value().is_object()) {
        return Error(fmt::format("{}:{}: {}", path, line, row.ok() ? "not a JSON object" : row.error().message()));
      }
      if (Status s = add(row.value(), line); !s.ok()) return s.error();
    }
  }
  return table;
}

}  // namespace weir::plugins
