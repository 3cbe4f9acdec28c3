#include "lookup_table.hpp"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "weir/json.hpp"

namespace weir::plugins {

namespace {

// One CSV record (RFC 4180: quoted cells may hold commas, quotes and newlines).
bool next_record(std::string_view text, std::size_t& at, std::vector<std::string>& cells) {
  cells.clear();
  if (at >= text.size()) return false;
  std::string cell;
  bool quoted = false;
  while (at < text.size()) {
    char c = text[at++];
    if (quoted) {
      if (c == '"') {
        if (at < text.size() && text[at] == '"') {
          cell.push_back('"');
          ++at;
        } else {
          quoted = false;
        }
      } else {
        cell.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.push_back(std::move(cell));
      cell.clear();
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && at < text.size() && text[at] == '\n') ++at;
      break;
    } else {
      cell.push_back(c);
    }
  }
  cells.push_back(std::move(cell));
  return true;
}

Value cell_value(const std::string& cell, Arena& arena) {
  if (cell.empty()) return Value::null();
  std::int64_t number;
  auto [end, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), number);
  if (ec == std::errc() && end == cell.data() + cell.size()) return Value::integer(number);
  return Value::string(arena, cell);
}

}  // namespace

std::string LookupTable::key_text(const Value& value) {
  if (value.is_string()) return std::string(value.as_string());
  return to_json(value);
}

const Value* LookupTable::find(std::string_view key) const {
  auto it = rows_.find(key);
  return it == rows_.end() ? nullptr : &it->second;
}

Result<std::shared_ptr<LookupTable>> LookupTable::load(const std::string& path, const std::string& key_column) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(fmt::format("cannot read lookup table {}", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  auto table = std::make_shared<LookupTable>();
  Arena& arena = table->arena_;
  auto add = [&](Value row, std::size_t line) -> Status {
    const Value* key = row.find(key_column);
    if (key == nullptr || key->is_null()) {
      return Error(fmt::format("{}:{}: the row has no '{}'", path, line, key_column));
    }
    std::string_view stable = arena.copy(key_text(*key));
    table->rows_[stable] = row;
    return {};
  };
  bool csv = path.size() >= 4 && path.compare(path.size() - 4, 4, ".csv") == 0;
  if (csv) {
    std::size_t at = 0, line = 1;
    std::vector<std::string> header, cells;
    if (!next_record(text, at, header)) return Error(fmt::format("{}: empty CSV (a header row is needed)", path));
    if (std::find(header.begin(), header.end(), key_column) == header.end()) {
      return Error(fmt::format("{}: no column '{}' in the header", path, key_column));
    }
    std::vector<std::string_view> names;
    for (const std::string& h : header) names.push_back(arena.copy(h));
    table->rows_.reserve(text.size() / 64);
    while (next_record(text, at, cells)) {
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
