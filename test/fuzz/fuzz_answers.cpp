// What the ClickHouse and InfluxDB servers answer, as the sinks classify it: any status,
// header and body (the first bytes pick the status and whether an exception-code header
// came), so a strange or hostile server's answer is a verdict, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "plugins/sinks/clickhouse/errors.hpp"
#include "plugins/sinks/influxdb/errors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace weir::plugins;
  if (size < 3) return 0;
  int status = 100 + (data[0] | (data[1] << 8)) % 500;
  bool with_header = (data[2] & 1) != 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 3, size - 3);
  std::string header(rest.substr(0, rest.find('\n')));
  (void)clickhouse::exception_code(rest);
  (void)clickhouse::classify(status, with_header ? &header : nullptr, rest, status % 7 == 0 ? "connection reset" : "");
  (void)influxdb::error_message(rest, with_header ? &header : nullptr);
  return 0;
}
