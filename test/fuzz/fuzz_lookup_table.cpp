// enrich's lookup tables, CSV (RFC 4180 quoting, CRLF, blank lines) and NDJSON, as a file
// on disk would hold them. The first byte picks the format (bit 0) and the key column
// (bits 1-2); the rest is the file. A table that loads must find a row by the key text of
// every whitespace-separated word of the input that it holds, and that row's key column
// must read back as that key.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "plugins/transforms/enrich/lookup_table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using weir::plugins::LookupTable;
  if (size < 1) return 0;
  static const std::string kKeys[] = {"id", "user_id", "a", "key"};
  const std::string& key = kKeys[(data[0] >> 1) % 4];
  auto format = data[0] % 2 == 0 ? LookupTable::Format::Csv : LookupTable::Format::Ndjson;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto table = LookupTable::parse(text, format, key, "fuzz.table");
  if (!table.ok()) {
    if (table.error().message().empty()) std::abort();  // every refusal says why
    return 0;
  }
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find_first_of(" \t\r\n,\":{}", at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view word = text.substr(at, end - at);
    at = end + 1;
    if (word.empty()) continue;
    const weir::Value* row = table.value()->find(word);
    if (row == nullptr) continue;
    const weir::Value* column = row->find(key);
    if (column == nullptr || LookupTable::key_text(*column) != word) {
      std::fprintf(stderr, "fuzz_lookup_table: the row found for '%.*s' has another key\n", static_cast<int>(word.size()),
                   word.data());
      std::abort();
    }
  }
  return 0;
}
