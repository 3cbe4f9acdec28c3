#include "working_time.hpp"

#include <fmt/format.h>

#include <charconv>

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

std::optional<WorkKey> WorkKey::parse(std::string_view text) {
  WorkKey key;
  IdValue* ids[] = {&key.job, &key.task, &key.project};
  for (std::size_t k = 0; k < 3; ++k) {
    std::size_t bar = text.find('|');
    if ((bar == std::string_view::npos) != (k == 2)) return std::nullopt;
    std::string_view one = text.substr(0, bar);
    text.remove_prefix(k == 2 ? text.size() : bar + 1);
    if (one == "-") continue;  // null: the default
    ids[k]->kind = IdValue::Kind::Int;
    if (!one.empty() && one.front() == 's') {
      ids[k]->kind = IdValue::Kind::Text;
      one.remove_prefix(1);
    }
    auto [end, error] = std::from_chars(one.data(), one.data() + one.size(), ids[k]->number);
    if (one.empty() || error != std::errc() || end != one.data() + one.size()) return std::nullopt;
    if (ids[k]->kind == IdValue::Kind::Text && ids[k]->number < 0) return std::nullopt;
  }
  return key;
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
