#include "working_time.hpp"

#include <fmt/format.h>

namespace weir::plugins {

std::string WorkKey::str() const {
  auto one = [](const IdValue& v) {
    switch (v.kind) {
      case IdValue::Kind::Null: return std::string("-");
      case IdValue::Kind::Int: return std::to_string(v.number);
      case IdValue::Kind::Text: return "s" + std::to_string(v.number);
    }
    return std::string();
  };
  return one(job) + "|" + one(task) + "|" + one(project);
}

Step advance(UserClock& clock, const WorkingTimeParams& params, EpochNanos timestamp, EpochNanos end, const WorkKey& ids) {
  if (!clock.started) {
    // No previous event: CVAT starts from the first event of the batch itself.
    clock.started = true;
    clock.prev_end = timestamp;
    clock.prev_ids = ids;
  }
  Step step;
  step.key = clock.prev_ids;
  if (timestamp > clock.prev_end) {
    EpochNanos gap = timestamp - clock.prev_end;
    if (gap < params.threshold) step.nanos += gap;  // strictly: a gap of exactly 100 s counts 0
    clock.prev_end = timestamp;
  }
  if (end > clock.prev_end) {
    step.nanos += end - clock.prev_end;
    clock.prev_end = end;
  }
  clock.prev_ids = ids;
  clock.last_seen = std::max(clock.last_seen, timestamp);
  return step;
}

}  // namespace weir::plugins
