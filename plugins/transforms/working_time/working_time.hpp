// CVAT's working-time algorithm, as a streaming computation over event time.
//
// Per user, events are taken in the order they arrive; `prev_end` (end of the last counted
// activity) and `prev_ids` (job, task, project of the previous event) carry over from batch
// to batch, which is what CVAT's `previous_event` gives its server. For each event e:
//   end(e) = timestamp + duration for "compressed" scopes (change:frame), else timestamp;
//   wt = (timestamp - prev_end if 0 < that < threshold) + (end(e) - max(prev_end, timestamp) if > 0);
//   wt is added to prev_ids' total; prev_ids = ids(e).
// Totals are kept in nanoseconds; what is emitted is floored to whole milliseconds with the
// remainder carried to the next emission of the same key, so the sum per key is the same
// however the stream is cut into batches.
//
// Rows: a user's time collects in one open row (its key, its first event's timestamp and
// request id) and is emitted on event-time boundaries, never per batch: when the user's
// (job, task, project) changes; when the row spans `emit_interval` of event time; when the
// user has been idle for `idle_after` by the pipeline's time; and at flush. So the rows,
// not only their totals, are the same however the input is cut.
#pragma once

#include <cstdint>
#include <compare>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "weir/time.hpp"

namespace weir::plugins {

// One of job_id, task_id, project_id: null, an integer, or text. Text ids (rare: CVAT's
// are integers) are interned by the transform, so a key is a few plain words to copy and
// compare on every event.
struct IdValue {
  enum class Kind : std::uint8_t { Null, Int, Text } kind = Kind::Null;
  std::int64_t number = 0;  // the integer, or the text's index in the transform's table
  auto operator<=>(const IdValue&) const = default;
};

struct WorkKey {
  IdValue job, task, project;
  auto operator<=>(const WorkKey&) const = default;
  // "job|task|project" for snapshots: "-" for null, the integer, or "s" and a text id's
  // interned index. parse() reads it back; an error for anything else.
  std::string str() const;
  static std::optional<WorkKey> parse(std::string_view text);
};

struct WorkingTimeParams {
  EpochNanos threshold = 100'000'000'000;  // 100 s
};

// A user's row not yet emitted. Its fields are kept as JSON texts: they outlive the
// batches (and arenas) of the events they came from.
struct OpenRow {
  bool open = false;
  WorkKey key;
  EpochNanos nanos = 0;
  EpochNanos first_time = 0;        // event time of its first counted event
  std::string timestamp;            // that event's `timestamp`, as it came (JSON)
  std::vector<std::string> copied;  // its copy_fields (JSON), in the option's order
  std::string request_id;           // JSON; empty when it came without an HTTP request
};

// The state of one user across batches.
struct UserClock {
  EpochNanos prev_end = 0;
  WorkKey prev_ids;
  bool started = false;
  EpochNanos last_seen = 0;                      // event time, for state_ttl
  EpochNanos seen_at = 0;                        // the pipeline's time at the user's last event
  // Sub-millisecond remainders per key, nonzero ones only (a key without one carries 0): with
  // millisecond event times, CVAT's, the map stays empty.
  std::map<WorkKey, std::int64_t> carry_ns;
  OpenRow row;
  // The input partition the user's events come from (ADR 017): its state is saved, and
  // moves, with that partition's. "" when the input has no partitions.
  std::string partition;
};

// Adds one event to `clock` and returns the working time (ns) and the key it counts for.
struct Step {
  EpochNanos nanos = 0;
  WorkKey key;
};
Step advance(UserClock& clock, const WorkingTimeParams& params, EpochNanos timestamp, EpochNanos end, const WorkKey& ids);

}  // namespace weir::plugins
