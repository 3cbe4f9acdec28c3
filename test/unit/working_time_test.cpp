// working_time: CVAT's own unit cases, batch-cut independence, users, order, time forms.
#include <algorithm>
#include <catch2/catch.hpp>

#include <map>

#include <fmt/format.h>

#include "test_components.hpp"
#include "weir/json.hpp"
#include "weir/time.hpp"

using namespace weir;

namespace {

struct Harness : testing::TransformHarness {
  explicit Harness(const std::string& options = "") : TransformHarness("working_time", options) {}

  static std::vector<std::string> rows_of(const std::vector<std::string>& out) {
    std::vector<std::string> rows;
    for (const std::string& e : out) {
      if (e.find(R"("scope":"send:working_time")") != std::string::npos && e.find(R"("source":"server")") != std::string::npos) {
        rows.push_back(e);
      }
    }
    return rows;
  }
  static std::int64_t sum_ms(const std::vector<std::string>& rows) {
    std::int64_t total = 0;
    for (const std::string& e : rows) {
      Arena arena;
      JsonParser parser;
      total += parser.parse(e, arena).value().find("duration")->as_int();
    }
    return total;
  }

  // The working-time rows emitted while one batch of events is processed.
  std::vector<std::string> feed(const std::vector<std::string>& events) { return rows_of(TransformHarness::feed(events)); }
  // The rows still open, emitted at the end.
  std::vector<std::string> flush() { return rows_of(TransformHarness::flush()); }
  std::int64_t feed_ms(const std::vector<std::string>& events) { return sum_ms(feed(events)); }
  std::int64_t flush_ms() { return sum_ms(flush()); }
};

constexpr EpochNanos kStart = 1704110400LL * 1'000'000'000;  // 2024-01-01T12:00:00Z
constexpr EpochNanos kMs = 1'000'000;
constexpr EpochNanos kShortGap = 99'999 * kMs;
constexpr EpochNanos kLongGap = 100'000 * kMs;

std::string ev(const std::string& scope, EpochNanos at, std::int64_t duration_ms = 0, std::int64_t job = 1,
               std::int64_t user = 7) {
  ByteBuffer ts;
  format_iso8601(at, 3, ts);
  return fmt::format(R"({{"scope":"{}","source":"client","timestamp":"{}","duration":{},"job_id":{},"task_id":10,)"
                     R"("project_id":100,"user_id":{},"user_name":"ann","org_id":null}})",
                     scope, ts.view(), duration_ms, job, user);
}
std::string click(EpochNanos at, std::int64_t job = 1, std::int64_t user = 7) { return ev("click:element", at, 0, job, user); }
std::string frame(EpochNanos at, std::int64_t ms, std::int64_t job = 1, std::int64_t user = 7) {
  return ev("change:frame", at, ms, job, user);
}

// CVAT's cases feed each event after the previous one: one batch each; the total of every
// row emitted, to the end.
std::int64_t one_by_one(const std::vector<std::string>& events) {
  Harness h;
  std::int64_t total = 0;
  for (const std::string& e : events) total += h.feed_ms({e});
  return total + h.flush_ms();
}

}  // namespace

TEST_CASE("working_time: CVAT's unit cases") {
  CHECK(one_by_one({click(kStart)}) == 0);
  CHECK(one_by_one({frame(kStart, 100'000)}) == 100'000);
  CHECK(one_by_one({click(kStart), click(kStart + kShortGap)}) == 99'999);
  CHECK(one_by_one({click(kStart), click(kStart + kLongGap)}) == 0);
  CHECK(one_by_one({frame(kStart, 1000), frame(kStart + 1000 * kMs + kShortGap, 5000)}) == 1000 + 104'999);
  CHECK(one_by_one({frame(kStart, 1000), frame(kStart + 1000 * kMs + kLongGap, 5000)}) == 1000 + 5000);
  CHECK(one_by_one({frame(kStart, 5000), frame(kStart + 3000 * kMs, 1000)}) == 5000);         // contained
  CHECK(one_by_one({frame(kStart, 5000), frame(kStart + 3000 * kMs, 6000)}) == 5000 + 4000);  // overlapping
  CHECK(one_by_one({frame(kStart, 5000), click(kStart + 3000 * kMs), click(kStart + 6000 * kMs)}) ==
        5000 + 1000);  // instant inside compressed
  CHECK(one_by_one({frame(kStart, 1000), click(kStart + 1000 * kMs + kShortGap)}) == 1000 + 99'999);
  CHECK(one_by_one({frame(kStart, 1000), click(kStart + 1000 * kMs + kLongGap)}) == 1000);
}

TEST_CASE("working_time: emitted events look exactly like CVAT's") {
  Harness h;
  h.feed({click(kStart)});
  auto out = h.feed({click(kStart + 5000 * kMs, 2)});
  // The user moved to job 2: job 1's row goes at once, counted for the ids of the event
  // before (job 1), with the timestamp of the event that counted first; no HTTP request,
  // so no `request` in the payload.
  REQUIRE(out.size() == 1);
  CHECK(out[0] ==
        R"({"scope":"send:working_time","obj_name":null,"obj_id":null,"obj_val":null,"source":"server",)"
        R"("timestamp":"2024-01-01T12:00:05.000Z","count":1,"duration":5000,"project_id":100,"task_id":10,"job_id":1,)"
        R"("user_id":7,"user_name":"ann","user_email":null,"org_id":null,"org_slug":null,)"
        R"("payload":"{\"working_time\":5000}"})");
  // With the request the time came in, CVAT's `request.id`.
  testing::TransformHarness with_request("working_time");
  with_request.feed({click(kStart)}, {R"({"request_id":"r-1"})"});
  auto rows = Harness::rows_of(with_request.feed({click(kStart + 2000 * kMs)}, {R"({"request_id":"r-2"})"}));
  CHECK(rows.empty());  // still open: same job, 2 s of event time
  rows = Harness::rows_of(with_request.flush());
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].find(R"("payload":"{\"working_time\":2000,\"request\":{\"id\":\"r-2\"}}")") != std::string::npos);
}

TEST_CASE("working_time: rows close every emit_interval of event time, when idle, and at the end") {
  Harness h;
  std::vector<std::string> rows;
  for (int i = 0; i <= 60; ++i) {  // a click every 10 s for 10 minutes, one job
    for (const std::string& r : h.feed({click(kStart + i * 10'000 * kMs)})) rows.push_back(r);
  }
  CHECK(rows.size() == 6);  // each 90 s of event time (9 gaps of 10 s)
  CHECK(Harness::sum_ms(rows) == 6 * 90'000);
  auto last = h.flush();
  CHECK(Harness::sum_ms(last) == 60'000);
  CHECK(h.flush().empty());

  // User 8 stops after 5 s; 90 s later by the pipeline's time (here: user 9's events), the row goes.
  Harness idle;
  idle.feed({click(kStart, 1, 8), click(kStart + 5000 * kMs, 1, 8)});
  CHECK(idle.feed({click(kStart + 60'000 * kMs, 1, 9)}).empty());
  auto out = idle.feed({click(kStart + 95'000 * kMs, 1, 9)});
  REQUIRE(out.size() == 1);
  CHECK(out[0].find(R"("duration":5000)") != std::string::npos);
  CHECK(out[0].find(R"("user_id":8)") != std::string::npos);
  CHECK(Harness::sum_ms(idle.flush()) == 35'000);  // user 9's open row
}

TEST_CASE("working_time: totals do not depend on how the stream is cut into batches") {
  // Three users interleaved, several jobs, idle gaps, compressed events, out-of-order events,
  // and sub-millisecond timestamps that only add up across batches.
  std::vector<std::string> stream;
  std::uint64_t seed = 12345;
  auto next = [&] { return seed = seed * 6364136223846793005ULL + 1442695040888963407ULL, seed >> 33; };
  std::map<int, EpochNanos> clock{{1, kStart}, {2, kStart}, {3, kStart}};
  for (int i = 0; i < 3000; ++i) {
    int user = 1 + static_cast<int>(next() % 3);
    EpochNanos gap = next() % 50 == 0 ? (100 + next() % 300) * 1'000'000'000LL : static_cast<EpochNanos>(next() % 9'000'000'000ULL);
    clock[user] += gap + static_cast<EpochNanos>(next() % 1000) * 1000;  // microseconds too
    EpochNanos at = next() % 40 == 0 ? clock[user] - 2'000'000'000 : clock[user];  // some arrive late
    int job = 1 + static_cast<int>(next() % 4);
    ByteBuffer ts;
    format_iso8601(at, 6, ts);
    bool is_frame = next() % 3 == 0;
    stream.push_back(fmt::format(R"({{"scope":"{}","source":"client","timestamp":"{}","duration":{},"job_id":{},"task_id":1,"project_id":1,"user_id":{}}})",
                                 is_frame ? "change:frame" : "draw:object", ts.view(), is_frame ? next() % 3000 : 0, job, user));
  }
  // Every event and row out, in order, to the end.
  auto run = [&](std::size_t cut) {
    testing::TransformHarness h("working_time");
    std::vector<std::string> out;
    for (std::size_t i = 0; i < stream.size(); i += cut) {
      std::vector<std::string> part(stream.begin() + i, stream.begin() + std::min(stream.size(), i + cut));
      for (std::string& e : h.feed(part)) out.push_back(std::move(e));
    }
    for (std::string& e : h.flush()) out.push_back(std::move(e));
    return out;
  };
  auto totals = [&](const std::vector<std::string>& out) {
    std::map<std::string, std::int64_t> sum;
    for (const std::string& e : Harness::rows_of(out)) {
      Arena arena;
      JsonParser parser;
      Value v = parser.parse(e, arena).value();
      sum[to_json(*v.find("user_id")) + "/" + to_json(*v.find("job_id"))] += v.find("duration")->as_int();
    }
    return sum;
  };
  auto all = run(stream.size());
  CHECK(totals(all).size() >= 10);
  // Not only the totals: the same rows, at the same places in the stream.
  CHECK(run(1) == all);
  CHECK(run(7) == all);
  CHECK(run(1000) == all);
}

TEST_CASE("working_time: who takes part, and bad timestamps") {
  Harness h;
  auto out = h.feed({
      R"({"scope":"click:element","source":"server","timestamp":"2024-01-01T12:00:00Z","user_id":1,"job_id":1})",
      R"({"scope":"click:element","source":"client","timestamp":"2024-01-01T12:00:00Z","user_id":null,"job_id":1})",
      R"({"scope":"send:working_time","source":"client","timestamp":"2024-01-01T12:00:00Z","user_id":1,"duration":5})",
      R"({"scope":"click:element","source":"client","timestamp":"yesterday","user_id":1,"job_id":1})",
  });
  CHECK(out.empty());
  CHECK(h.last->size() == 3);  // the three that pass through; the bad one is dead-lettered
  REQUIRE(h.dead.size() == 1);
  CHECK(h.dead[0].rfind("working_time: 'yesterday' is neither an ISO-8601 timestamp nor a number of epoch seconds", 0) == 0);
}

TEST_CASE("working_time: every timestamp form gives the same answer") {
  for (auto [first, second] : std::vector<std::pair<std::string, std::string>>{
           {R"("2024-01-01T12:00:00Z")", R"("2024-01-01T12:00:01.5Z")"},
           {R"("2024-01-01T14:00:00+02:00")", R"("2024-01-01T12:00:01.500000000Z")"},
           {R"("1704110400")", R"("1704110401.5")"},
           {"1704110400", "1704110401.5"},
           {"1704110400.0", R"("2024-01-01 12:00:01.5")"}}) {
    Harness h;
    h.feed({R"({"scope":"a","source":"client","user_id":1,"job_id":1,"timestamp":)" + first + "}"});
    INFO(first << " then " << second);
    CHECK(h.feed_ms({R"({"scope":"a","source":"client","user_id":1,"job_id":1,"timestamp":)" + second + "}"}) + h.flush_ms() == 1500);
  }
}

TEST_CASE("working_time: state_ttl forgets idle users without changing totals of instant events") {
  Harness keep, forget(", state_ttl: 10m");
  std::int64_t kept = 0, forgotten = 0;
  for (int user = 0; user < 50; ++user) {
    for (int i = 0; i < 4; ++i) {
      EpochNanos at = kStart + (user * 3600LL + i * 20) * 1'000'000'000;  // each user one hour after the last
      kept += keep.feed_ms({click(at, 1 + i % 2, user)});
      forgotten += forget.feed_ms({click(at, 1 + i % 2, user)});
    }
  }
  kept += keep.flush_ms();
  forgotten += forget.flush_ms();
  CHECK(kept == 50 * 3 * 20'000);
  CHECK(forgotten == kept);
}

TEST_CASE("working_time: text ids and users keep their keys apart, cached or not", "[working_time]") {
  Harness h;
  auto event = [](const std::string& user, const std::string& job, EpochNanos at) {
    ByteBuffer ts;
    format_iso8601(at, 3, ts);
    return fmt::format(R"({{"scope":"click:element","source":"client","timestamp":"{}","job_id":{},"task_id":"t-1",)"
                       R"("project_id":null,"user_id":{}}})",
                       ts.view(), job, user);
  };
  // Users 1 and 65 share a slot of the 64-entry recent-user cache; "1" (text) is a third
  // user; job "a" and job 1 are different keys.
  h.feed({event("1", "\"a\"", kStart), event("65", "1", kStart), event("\"1\"", "\"a\"", kStart)});
  auto out = h.feed({event("1", "1", kStart + 2 * kMs * 1000), event("65", "1", kStart + 3 * kMs * 1000),
                     event("\"1\"", "\"a\"", kStart + 4 * kMs * 1000)});
  CHECK(out.size() == 1);  // user 1 left job "a"; the others are still on theirs
  for (std::string& e : h.flush()) out.push_back(std::move(e));
  REQUIRE(out.size() == 3);
  std::sort(out.begin(), out.end());
  CHECK(out[0].find(R"("duration":2000,"project_id":null,"task_id":"t-1","job_id":"a","user_id":1,)") != std::string::npos);
  CHECK(out[1].find(R"("duration":3000,"project_id":null,"task_id":"t-1","job_id":1,"user_id":65,)") != std::string::npos);
  CHECK(out[2].find(R"("duration":4000,"project_id":null,"task_id":"t-1","job_id":"a","user_id":"1",)") != std::string::npos);
}

TEST_CASE("working_time: a snapshot restored into a new instance carries on exactly, text ids and carries included") {
  auto event = [](const std::string& user, const std::string& job, EpochNanos at) {
    ByteBuffer ts;
    format_iso8601(at, 3, ts);
    return fmt::format(R"({{"scope":"click:element","source":"client","timestamp":"{}","job_id":{},"user_id":{}}})",
                       ts.view(), job, user);
  };
  Harness whole, first;
  std::vector<std::string> before = {event("1", "\"a\"", kStart), event("\"u\"", "7", kStart + kMs / 3),
                                     event("1", "\"a\"", kStart + 1500 * kMs + kMs / 2)};
  std::vector<std::string> after = {event("1", "\"a\"", kStart + 4000 * kMs), event("\"u\"", "7", kStart + 2000 * kMs),
                                    event("1", "\"b\"", kStart + 9000 * kMs + kMs / 2)};
  whole.feed(before);
  first.feed(before);
  std::string state = first.snapshot();
  Harness second;
  REQUIRE(second.restore(state).ok());
  CHECK(second.snapshot() == state);
  auto expected = whole.feed(after);
  auto got = second.feed(after);
  CHECK(got == expected);
  CHECK(!expected.empty());
  CHECK(second.flush() == whole.flush());  // the open rows came through the snapshot too
  CHECK_FALSE(second.restore("{\"texts\":[],\"users\":[[1]]}").ok());
  CHECK_FALSE(second.restore("not json").ok());
  // A carry's key: "job|task|project", each "-", an integer or "s" and a text's index.
  auto with_carry = [](const std::string& key) {
    return R"({"texts":["a"],"users":[["1",0,1,0,0,0,0,0,0,0,{")" + key + R"(":5}]]})";
  };
  CHECK(second.restore(with_carry("-|12|s0")).ok());
  CHECK_FALSE(second.restore(with_carry("s1|-|-")).ok());  // no text 1
  CHECK_FALSE(second.restore(with_carry("1|2")).ok());
  CHECK_FALSE(second.restore(with_carry("1|2|3|4")).ok());
  CHECK_FALSE(second.restore(with_carry("1|x|3")).ok());
  CHECK_FALSE(second.restore(with_carry("1||3")).ok());
}

TEST_CASE("working_time: a client's absurd duration is held to a year, not overflowed") {
  constexpr std::int64_t kYearMs = 366LL * 86'400'000;
  CHECK(one_by_one({frame(kStart, 9'000'000'000'000'000)}) == kYearMs);  // x 1e6 would overflow int64
  CHECK(one_by_one({frame(kStart, kYearMs - 1)}) == kYearMs - 1);
  Harness h;
  std::string huge_double = frame(kStart, 1);
  huge_double.replace(huge_double.find("\"duration\":1"), 12, "\"duration\":1e300");
  CHECK(h.feed_ms({huge_double}) + h.flush_ms() == kYearMs);
}

TEST_CASE("working_time: the user and copied fields come out as they went in, of every kind") {
  Harness h(", copy_fields: [a, b, c, d, e, f, g, h, i]");
  const std::string values =
      R"("a":"plain","b":"quote \" and \\ and \n","c":-42,"d":18446744073709551615,"e":2.5,"f":true,)"
      R"("g":{"k":[1,"x"]},"h":"","i":null)";
  auto event = [&](EpochNanos at) {
    ByteBuffer ts;
    format_iso8601(at, 3, ts);
    return fmt::format(R"({{"scope":"click:element","source":"client","timestamp":"{}","job_id":1,)"
                       R"("task_id":2,"project_id":3,"user_id":"u-\"7\"",{}}})",
                       ts.view(), values);
  };
  h.feed({event(kStart), event(kStart + 1000 * kMs)});
  auto rows = h.flush();
  REQUIRE(rows.size() == 1);
  INFO(rows[0]);
  CHECK(rows[0].find(R"("duration":1000)") != std::string::npos);
  CHECK(rows[0].find(R"("user_id":"u-\"7\"")") != std::string::npos);
  CHECK(rows[0].find(values) != std::string::npos);
}

TEST_CASE("working_time: state per partition moves to another instance, which makes the same rows (ADR 017)") {
  // Six users, each keyed to one of two partitions, with job changes, idle gaps longer than
  // idle_after (closed by the partition's own event time) and sub-millisecond times.
  struct In {
    std::string partition;
    std::string event;
  };
  std::vector<In> stream;
  std::uint64_t seed = 99;
  auto next = [&] { return seed = seed * 6364136223846793005ULL + 1442695040888963407ULL, seed >> 33; };
  std::map<int, EpochNanos> clock;
  for (int i = 0; i < 2400; ++i) {
    int user = 1 + static_cast<int>(next() % 6);
    if (!clock.count(user)) clock[user] = kStart;
    clock[user] += next() % 40 == 0 ? 200'000 * kMs : static_cast<EpochNanos>(next() % 20'000) * kMs + (next() % 1000) * 1000;
    ByteBuffer ts;
    format_iso8601(clock[user], 6, ts);
    bool is_frame = next() % 3 == 0;
    stream.push_back({"events/" + std::to_string(user % 2),
                      fmt::format(R"({{"scope":"{}","source":"client","timestamp":"{}","duration":{},"job_id":{},"task_id":1,"project_id":1,"user_id":{}}})",
                                  is_frame ? "change:frame" : "draw:object", ts.view(), is_frame ? next() % 3000 : 0,
                                  1 + static_cast<int>(next() % 3), user)});
  }
  // Batches as the kafka source makes them: a run of the stream, one batch per partition.
  auto feed = [](Harness& h, const std::vector<In>& part, std::map<std::string, std::vector<std::string>>& rows) {
    for (std::size_t at = 0; at < part.size(); at += 10) {
      std::map<std::string, std::vector<std::string>> by_partition;
      for (std::size_t i = at; i < std::min(part.size(), at + 10); ++i) by_partition[part[i].partition].push_back(part[i].event);
      for (auto& [partition, events] : by_partition) {
        h.partition = partition;
        for (std::string& row : h.feed(events)) rows[partition].push_back(std::move(row));
      }
    }
  };
  auto flush = [](Harness& h, std::map<std::string, std::vector<std::string>>& rows) {
    std::vector<std::string> out = h.flush();
    for (std::size_t i = 0; i < out.size(); ++i) rows[h.partitions[i]].push_back(out[i]);
  };
  const std::size_t half = stream.size() / 2;
  std::vector<In> first(stream.begin(), stream.begin() + half), second(stream.begin() + half, stream.end());

  std::map<std::string, std::vector<std::string>> whole;  // one instance throughout
  Harness one;
  feed(one, first, whole);
  std::map<std::string, std::size_t> rows_at_half;
  for (auto& [partition, rows] : whole) rows_at_half[partition] = rows.size();
  feed(one, second, whole);
  flush(one, whole);
  REQUIRE(whole["events/0"].size() > 20);
  REQUIRE(whole["events/1"].size() > 20);

  // events/1 moves from `a` to `b` half way.
  std::map<std::string, std::vector<std::string>> moved;
  Harness a, b;
  feed(a, first, moved);
  std::optional<std::string> state = a.snapshot_partition("events/1");
  REQUIRE(state);
  a.drop_partition("events/1");
  REQUIRE(b.restore_partition("events/1", *state).ok());
  std::vector<In> zero, one_rest;
  for (const In& in : second) (in.partition == "events/1" ? one_rest : zero).push_back(in);
  feed(a, zero, moved);
  feed(b, one_rest, moved);
  flush(a, moved);
  flush(b, moved);
  CHECK(moved["events/0"] == whole["events/0"]);
  CHECK(moved["events/1"] == whole["events/1"]);
  CHECK(a.snapshot_partition("events/1") == std::optional<std::string>(R"({"texts":[],"watermark":0,"users":[]})"));

  // A weir that takes a partition over after a crash restores an older state and makes the
  // rows since it again: the same rows, byte for byte (a table can drop the copies).
  std::map<std::string, std::vector<std::string>> again;
  Harness c;
  REQUIRE(c.restore_partition("events/1", *state).ok());
  feed(c, one_rest, again);
  flush(c, again);
  std::vector<std::string> after_half(whole["events/1"].begin() + static_cast<std::ptrdiff_t>(rows_at_half["events/1"]),
                                      whole["events/1"].end());
  CHECK(again["events/1"] == after_half);
  CHECK_FALSE(c.restore_partition("events/0", "not json").ok());
}
