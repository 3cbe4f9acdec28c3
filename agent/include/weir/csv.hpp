// CSV fields as RFC 4180 and Python's csv.writer (QUOTE_MINIMAL, CVAT's export) write them:
// quoted only when the text holds a comma, a quote, CR or LF, a quote inside doubled.
#pragma once

#include <string_view>

#include "weir/buffer.hpp"

namespace weir {

inline void write_csv_field(std::string_view text, ByteBuffer& out) {
  if (text.find_first_of(",\"\r\n") == std::string_view::npos) {
    out.append(text);
    return;
  }
  out.push_back('"');
  for (char c : text) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

}  // namespace weir
