// weir-line-protocol-bench FILE.ndjson [v1|v2]: the influxdb sink's encoder by itself. The
// file (LUNA point events, as the monitoring transform makes them) is read and decoded into
// batches the way the stdin source does it, untimed; then every event is written as a line
// with the mapping of pipelines/service-monitoring.yaml, and only that is timed. Prints one
// JSON line: {"lines":..,"bytes_out":..,"seconds":..,"refused":..}.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "plugins/sinks/influxdb/line_protocol.hpp"
#include "weir/codec.hpp"

using namespace weir;
using namespace weir::plugins::influxdb;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: weir-line-protocol-bench FILE.ndjson [v1|v2]\n");
    return 2;
  }
  int fd = ::open(argv[1], O_RDONLY);
  if (fd < 0) {
    std::perror(argv[1]);
    return 1;
  }
  std::vector<BatchPtr> batches;
  LineStream stream(Codec::Json, 100 << 10);
  std::vector<DecodeRejection> rejected;
  for (bool more = true; more;) {
    std::size_t available = 0;
    char* space = stream.read_space(available);
    ssize_t n = ::read(fd, space, available);
    auto batch = EventBatch::create();
    if (n > 0) stream.commit(static_cast<std::size_t>(n), *batch, rejected);
    else {
      stream.finish(*batch, rejected);
      more = false;
    }
    if (!batch->empty()) batches.push_back(std::move(batch));
  }
  ::close(fd);

  PointMapping mapping;
  mapping.dialect = argc > 2 && std::string(argv[2]) == "v2" ? Dialect::V2 : Dialect::V1;
  mapping.measurement_field = FieldPath("series");
  mapping.tags = {FieldPath("tags")};
  mapping.fields = {FieldPath("fields")};
  mapping.timestamp_field = FieldPath("time");
  mapping.precision = Precision::Milliseconds;
  mapping.field_types = {{"execution_time", FieldType::Float}};
  PointEncoder encoder(std::move(mapping));

  // Uploads of 5000 lines, as the sink sends them.
  std::uint64_t lines = 0, bytes_out = 0, refused = 0;
  ByteBuffer body;
  body.reserve(4 << 20);
  auto start = std::chrono::steady_clock::now();
  std::size_t in_body = 0;
  for (const BatchPtr& batch : batches) {
    for (const Event& event : batch->events()) {
      if (encoder.encode_row(event, body).ok()) ++lines;
      else ++refused;
      if (++in_body == 5000) {
        bytes_out += body.size();
        body.truncate(0);
        in_body = 0;
      }
    }
  }
  bytes_out += body.size();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"lines\":%llu,\"bytes_out\":%llu,\"seconds\":%.6f,\"refused\":%llu}\n",
              static_cast<unsigned long long>(lines), static_cast<unsigned long long>(bytes_out), seconds,
              static_cast<unsigned long long>(refused));
  return refused == 0 ? 0 : 1;
}
