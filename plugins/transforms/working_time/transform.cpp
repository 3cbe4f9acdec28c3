// `working_time` transform: CVAT's working time per (user, job, task, project), computed in
// the pipeline and emitted as `send:working_time` events exactly as CVAT stores them.
// Every input event passes through; a row goes right after the event that closed it (see
// working_time.hpp for when that is).
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <optional>
#include <queue>
#include <unordered_map>

#include <fmt/format.h>

#include "weir/field_path.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"
#include "working_time.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "threshold", .type = OptionType::Duration, .default_value = "100s",
     .doc = "A gap between events this long or longer counts as idle (CVAT: 100 s, strict)."},
    {.name = "compressed_scopes", .type = OptionType::StringList, .default_value = "[change:frame]",
     .doc = "Scopes whose `duration` is real time spent."},
    {.name = "sources", .type = OptionType::StringList, .default_value = "[client]",
     .doc = "Values of `source` that take part; other events pass through untouched."},
    {.name = "user_field", .type = OptionType::String, .default_value = "user_id", .doc = "Who the time is for."},
    {.name = "job_field", .type = OptionType::String, .default_value = "job_id", .doc = "Job id field."},
    {.name = "task_field", .type = OptionType::String, .default_value = "task_id", .doc = "Task id field."},
    {.name = "project_field", .type = OptionType::String, .default_value = "project_id", .doc = "Project id field."},
    {.name = "copy_fields", .type = OptionType::StringList, .default_value = "[user_name, user_email, org_id, org_slug]",
     .doc = "User and organization fields copied from the user's events onto the emitted ones."},
    {.name = "emit_interval", .type = OptionType::Duration, .default_value = "90s",
     .doc = "A user's open row is emitted once it spans this much event time (CVAT's client sends every 90 s); "
            "also when the user's job changes, when they have been idle for `idle_after`, and at the end."},
    {.name = "idle_after", .type = OptionType::Duration, .default_value = "90s",
     .doc = "Emit the open row of a user who sent nothing for this long by the pipeline's clock (live: the system "
            "clock; replay: event time)."},
    {.name = "state_ttl", .type = OptionType::Duration, .default_value = "0s",
     .doc = "Forget a user idle this long in event time (0: never). Must be at least `threshold`: see the docs "
            "for the one case where forgetting moves time between a user's keys."},
};

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

class WorkingTime final : public Transform {
  // When to look at a user with an open row again: a min-heap by due time, ties in the
  // order pushed (never by address, so a replay closes them in the same order).
  struct IdleCheck {
    EpochNanos due;
    std::uint64_t order;
    UserClock* clock;
    bool operator>(const IdleCheck& other) const { return due != other.due ? due > other.due : order > other.order; }
  };
  // Per input partition (ADR 017; kUnpartitioned when the input has none): the latest event
  // time seen (the clock of a partitioned input, and of any input under replay) and the
  // idle checks of its users.
  struct PartitionClock {
    EpochNanos watermark = 0;
    std::priority_queue<IdleCheck, std::vector<IdleCheck>, std::greater<>> idle;
    EpochNanos last_eviction = 0;
  };
  std::map<std::string, PartitionClock> partitions_;
  static inline const std::string kUnpartitioned;

 public:
  static Result<std::unique_ptr<WorkingTime>> create(const Options& o) {
    auto self = std::make_unique<WorkingTime>();
    self->params_.threshold = o.duration("threshold").count();
    if (self->params_.threshold <= 0) return o.error_at("threshold", "threshold must be above 0");
    self->compressed_ = o.strings("compressed_scopes");
    self->sources_ = o.strings("sources");
    self->user_field_ = std::string(o.string("user_field"));
    self->job_field_ = std::string(o.string("job_field"));
    self->task_field_ = std::string(o.string("task_field"));
    self->project_field_ = std::string(o.string("project_field"));
    self->copy_fields_ = o.strings("copy_fields");
    self->user_ = FieldPath(self->user_field_);
    self->job_ = FieldPath(self->job_field_);
    self->task_ = FieldPath(self->task_field_);
    self->project_ = FieldPath(self->project_field_);
    for (const std::string& field : self->copy_fields_) self->copy_paths_.emplace_back(field);
    self->interval_ = o.duration("emit_interval").count();
    if (self->interval_ <= 0) return o.error_at("emit_interval", "emit_interval must be above 0");
    self->idle_after_ = o.duration("idle_after").count();
    if (self->idle_after_ <= 0) return o.error_at("idle_after", "idle_after must be above 0");
    self->ttl_ = o.duration("state_ttl").count();
    if (self->ttl_ != 0 && self->ttl_ < self->params_.threshold) {
      return o.error_at("state_ttl", "state_ttl must be 0 (never) or at least threshold");
    }
    return self;
  }

  Status start(TransformContext& ctx) override {
    ctx_ = &ctx;
    // Live, a timer emits the rows of users who went quiet; under replay the clock follows
    // the input and only event time emits (a timer would fire at points the input does not fix).
    if (ctx.loop() != nullptr && !ctx.clock().follows_input()) {
      int rc = start_timer(
          idle_timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<WorkingTime*>(t->data)->on_idle_timer(); },
          kIdleCheckMs, kIdleCheckMs);
      if (rc != 0) return Error("cannot start the idle timer: " + uv_error_text(rc));
    }
    return {};
  }

  void process(BatchPtr batch, TransformContext& ctx) override {
    Arena& arena = batch->arena();
    std::vector<Event>& events = batch->events();
    rows_.clear();
    std::size_t kept = 0;
    // A partitioned input's batch is of one partition, whose own event time is the clock:
    // the rows must follow from the input alone, so the weir that takes the partition over
    // makes the same ones (ADR 017).
    const PartitionPosition* position = batch->partition();
    const std::string& partition = position != nullptr ? position->partition : kUnpartitioned;
    PartitionClock& part = partitions_[partition];
    // Live, the whole batch is seen at one instant: one clock read, not one per event (it
    // was 1.6% of the CVAT pipeline's CPU). Under replay the time is the input's, per event.
    const bool follows_input = position != nullptr || ctx.clock().follows_input();
    const EpochNanos batch_now = follows_input ? 0 : ctx.clock().now();
    for (std::size_t i = 0; i < events.size(); ++i) {
      prefetch_ahead(events, i);  // the batch was decoded on another core
      Event& event = events[i];
      // Every field this event needs is looked up once, by hinted paths.
      const Value* source = source_.find(event.fields);
      if (source == nullptr || !source->is_string() || !listed(sources_, source->as_string())) {
        events[kept++] = event;
        continue;
      }
      const Value* scope = scope_.find(event.fields);
      std::string_view scope_text = scope != nullptr && scope->is_string() ? scope->as_string() : std::string_view();
      const Value* user = user_.find(event.fields);
      if (user == nullptr || user->is_null() || scope_text == "send:working_time") {
        events[kept++] = event;
        continue;
      }
      const Value* ts_value = timestamp_.find(event.fields);
      auto timestamp = ts_value ? parse_timestamp(*ts_value) : Result<EpochNanos>(Error("it has no timestamp"));
      if (!timestamp.ok()) {
        ctx.dead_letter(event, "working_time: " + timestamp.error().message());
        continue;
      }
      events[kept++] = event;
      EpochNanos at = timestamp.value();
      part.watermark = std::max(part.watermark, at);
      EpochNanos now = follows_input ? part.watermark : batch_now;
      EpochNanos end = at;
      if (scope != nullptr && listed(compressed_, scope_text)) end += duration_nanos(duration_.find(event.fields));
      UserClock& clock = clock_of(*user);
      if (clock.partition != partition) clock.partition = partition;  // users are keyed to partitions: once
      if (ttl_ > 0 && clock.started && at - clock.last_seen >= ttl_) {
        close_row(clock, arena, kept);  // a new session: what came before is emitted first
        clock = UserClock();
      }
      clock.seen_at = now;
      ids_.job = id_of(job_.find(event.fields));
      ids_.task = id_of(task_.find(event.fields));
      ids_.project = id_of(project_.find(event.fields));
      Step step = advance(clock, params_, at, end, ids_);
      if (step.nanos > 0) {
        OpenRow& row = clock.row;
        if (row.open && (row.key != step.key || at - row.first_time >= interval_)) close_row(clock, arena, kept);
        if (!row.open) open_row(clock, step.key, at, *ts_value, event);
        row.nanos += step.nanos;
      }
      // The user moved to another job (task, project): nothing more can count for the
      // open row's key until they come back, so it goes now.
      if (clock.row.open && clock.row.key != clock.prev_ids) close_row(clock, arena, kept);
      close_idle(part, now, arena, kept);
    }
    events.resize(kept);
    if (!rows_.empty()) place_rows(events);
    if (ttl_ > 0) evict_idle(partition, follows_input ? part.watermark : batch_now, arena, events);
    ctx.emit(std::move(batch));
  }

  // Every input has ended: the open rows go, in the users' order, a batch per partition
  // carrying it (its rows change that partition's state, which is saved after them).
  void flush(TransformContext& ctx) override {
    std::map<std::string, BatchPtr> batches;
    for (UserClock* clock : users_in_order()) {
      BatchPtr& batch = batches[clock->partition];
      if (!batch) {
        batch = EventBatch::create();
        if (!clock->partition.empty()) batch->set_partition(std::make_shared<PartitionPosition>(PartitionPosition{clock->partition, -1}));
      }
      emit_row(*clock, batch->arena(), batch->events());
    }
    for (auto& [partition, batch] : batches) {
      if (!batch->empty()) ctx.emit(std::move(batch));
    }
  }

  // The per-user clocks (and the text ids their keys refer to) survive restarts.
  bool keeps_state() const override { return true; }
  // process() touches the batch and the clocks only; the idle timer goes through
  // run_exclusive: it may run where the batch was decoded (ADR 015).
  bool runs_off_loop() const override { return true; }

  // {"texts":[..],"watermark":ns,"users":[[user as JSON text, prev_end, started, last_seen,
  //   job kind, job number, task kind, task number, project kind, project number, {carry key: ns},
  //   seen_at, open row or null], ..]}, an open row being [job kind, job number, task kind,
  //   task number, project kind, project number, ns, first_time, timestamp JSON, [copied JSON..],
  //   request id JSON or ""]. Snapshots of before rows were kept (11 fields a user) restore too.
  std::string snapshot() const override { return write_state(nullptr); }

  // ADR 017: the users of one input partition, in the same form, with that partition's
  // event time as the watermark (and every text id: few, and shared by the partitions).
  bool partitions_state() const override { return true; }
  std::optional<std::string> snapshot_partition(const std::string& partition) override { return write_state(&partition); }

  // Its users join the others; their text ids are taken into this instance's table.
  Status restore_partition(const std::string& partition, std::string_view snapshot) override {
    auto parsed = parse_state(snapshot);
    if (!parsed.ok()) return parsed.error();
    ParsedState& state = parsed.value();
    std::vector<std::int64_t> ids;  // snapshot text index -> this instance's
    for (const std::string& text : state.texts) ids.push_back(intern(text));
    auto remap = [&](WorkKey& key) {
      for (IdValue* id : {&key.job, &key.task, &key.project}) {
        if (id->kind == IdValue::Kind::Text) id->number = ids[static_cast<std::size_t>(id->number)];
      }
    };
    drop_partition(partition);
    for (auto& [user, clock] : state.users) {
      remap(clock.prev_ids);
      remap(clock.row.key);
      std::map<WorkKey, std::int64_t> carries;
      for (const auto& [key, ns] : clock.carry_ns) {
        WorkKey mapped = key;
        remap(mapped);
        carries[mapped] = ns;
      }
      clock.carry_ns = std::move(carries);
      clock.partition = partition;
      auto [entry, added] = clocks_.insert_or_assign(user, std::move(clock));
      clock_users_[&entry->second] = &entry->first;
    }
    partitions_[partition].watermark = state.watermark;
    recent_.fill(RecentUser{});
    rebuild_idle_checks();
    return {};
  }

  void drop_partition(const std::string& partition) override {
    std::erase_if(clocks_, [&](const auto& entry) {
      if (entry.second.partition != partition) return false;
      clock_users_.erase(&entry.second);
      return true;
    });
    partitions_.erase(partition);
    recent_.fill(RecentUser{});  // it may point at erased clocks
    rebuild_idle_checks();       // as may another partition's checks, for a user who moved
  }

  // The users of `only` (a partition), or all.
  std::string write_state(const std::string* only) const {
    ByteBuffer out;
    out.append(R"({"texts":[)");
    for (std::size_t i = 0; i < texts_.size(); ++i) {
      if (i) out.push_back(',');
      write_json_string(texts_[i], out);
    }
    auto found = partitions_.find(only != nullptr ? *only : kUnpartitioned);
    out.append(fmt::format(R"(],"watermark":{},"users":[)", found != partitions_.end() ? found->second.watermark : 0));
    // In the users' order, so the same state always gives the same bytes.
    std::vector<const std::pair<const std::string, UserClock>*> users;
    for (const auto& entry : clocks_) {
      if (only == nullptr || entry.second.partition == *only) users.push_back(&entry);
    }
    std::sort(users.begin(), users.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
    bool first = true;
    for (const auto* entry : users) {
      const std::string& user = entry->first;
      const UserClock& clock = entry->second;
      if (!first) out.push_back(',');
      first = false;
      out.push_back('[');
      write_json_string(user, out);
      out.append(fmt::format(",{},{},{}", clock.prev_end, clock.started ? 1 : 0, clock.last_seen));
      for (const IdValue* id : {&clock.prev_ids.job, &clock.prev_ids.task, &clock.prev_ids.project}) {
        out.append(fmt::format(",{},{}", static_cast<int>(id->kind), id->number));
      }
      out.append(",{");
      bool first_carry = true;
      for (const auto& [key, ns] : clock.carry_ns) {
        if (!first_carry) out.push_back(',');
        first_carry = false;
        write_json_string(key.str(), out);
        out.append(fmt::format(":{}", ns));
      }
      out.append(fmt::format("}},{},", clock.seen_at));
      const OpenRow& row = clock.row;
      if (!row.open) {
        out.append("null]");
        continue;
      }
      out.push_back('[');
      for (const IdValue* id : {&row.key.job, &row.key.task, &row.key.project}) {
        out.append(fmt::format("{},{},", static_cast<int>(id->kind), id->number));
      }
      out.append(fmt::format("{},{},", row.nanos, row.first_time));
      write_json_string(row.timestamp, out);
      out.append(",[");
      for (std::size_t i = 0; i < row.copied.size(); ++i) {
        if (i) out.push_back(',');
        write_json_string(row.copied[i], out);
      }
      out.append("],");
      write_json_string(row.request_id, out);
      out.append("]]");
    }
    out.append("]}");
    return std::string(out.view());
  }

  Status restore(std::string_view snapshot) override {
    auto parsed = parse_state(snapshot);
    if (!parsed.ok()) return parsed.error();
    ParsedState& state = parsed.value();
    clocks_.clear();
    for (auto& [user, clock] : state.users) clocks_.insert_or_assign(user, std::move(clock));
    partitions_.clear();
    partitions_[kUnpartitioned].watermark = state.watermark;
    clock_users_.clear();
    for (const auto& [user, clock] : clocks_) clock_users_[&clock] = &user;
    rebuild_idle_checks();
    texts_ = std::move(state.texts);
    text_ids_.clear();
    for (std::size_t i = 0; i < texts_.size(); ++i) text_ids_.emplace(texts_[i], static_cast<std::int64_t>(i));
    recent_.fill(RecentUser{});
    return {};
  }

 private:
  struct ParsedState {
    std::vector<std::string> texts;
    EpochNanos watermark = 0;
    std::vector<std::pair<std::string, UserClock>> users;
  };

  // A snapshot (snapshot() or snapshot_partition()'s form), checked whole before anything
  // of it is used.
  static Result<ParsedState> parse_state(std::string_view snapshot) {
    Arena arena;
    JsonParser parser;
    auto parsed = parser.parse(snapshot, arena);
    if (!parsed.ok()) return parsed.error();
    const Value* texts = parsed.value().find("texts");
    const Value* users = parsed.value().find("users");
    if (!texts || !texts->is_array() || !users || !users->is_array()) return Error("not a working_time snapshot");
    ParsedState state;
    for (const Value& text : texts->elements()) {
      if (!text.is_string()) return Error("a text id is not a string");
      state.texts.emplace_back(text.as_string());
    }
    for (const Value& entry : users->elements()) {
      auto fields = entry.elements();
      if (!entry.is_array() || (fields.size() != 11 && fields.size() != 13) || !fields[0].is_string() ||
          !fields[10].is_object()) {
        return Error("a user's clock is malformed");
      }
      for (std::size_t i = 1; i < 10; ++i) {
        if (!fields[i].is_int()) return Error("a user's clock is malformed");
      }
      UserClock clock;
      clock.prev_end = fields[1].as_int();
      clock.started = fields[2].as_int() != 0;
      clock.last_seen = fields[3].as_int();
      if (Status ids = read_ids(fields.data() + 4, state.texts.size(), clock.prev_ids); !ids.ok()) {
        return Error("a user's clock is malformed: " + ids.error().message());
      }
      for (const auto& member : fields[10].members()) {
        if (!member.value.is_int()) return Error("a carry is not an integer");
        std::optional<WorkKey> key = WorkKey::parse(member.key);
        if (!key || !names_known_texts(*key, state.texts.size())) return Error("a carry's key is malformed");
        if (member.value.as_int() != 0) clock.carry_ns[*key] = member.value.as_int();
      }
      if (fields.size() == 13) {
        if (!fields[11].is_int()) return Error("a user's clock is malformed");
        clock.seen_at = fields[11].as_int();
        if (!fields[12].is_null()) {
          if (Status read = read_row(fields[12], state.texts.size(), clock.row); !read.ok()) return read.error();
        }
      }
      state.users.emplace_back(std::string(fields[0].as_string()), std::move(clock));
    }
    const Value* watermark = parsed.value().find("watermark");
    if (watermark != nullptr && !watermark->is_int()) return Error("the watermark is not an integer");
    state.watermark = watermark ? watermark->as_int() : 0;
    return state;
  }

  static Status read_ids(const Value* fields, std::size_t texts, WorkKey& key) {
    IdValue* ids[] = {&key.job, &key.task, &key.project};
    for (std::size_t k = 0; k < 3; ++k) {
      if (!fields[2 * k].is_int() || !fields[2 * k + 1].is_int()) return Error("an id is malformed");
      std::int64_t kind = fields[2 * k].as_int();
      if (kind < 0 || kind > 2) return Error("an id is malformed");
      ids[k]->kind = static_cast<IdValue::Kind>(kind);
      ids[k]->number = fields[2 * k + 1].as_int();
      if (ids[k]->kind == IdValue::Kind::Text && (ids[k]->number < 0 || static_cast<std::size_t>(ids[k]->number) >= texts)) {
        return Error("an id names a text id the snapshot lacks");
      }
    }
    return {};
  }

  // Whether each text id of `key` is one of the snapshot's `texts` texts.
  static bool names_known_texts(const WorkKey& key, std::size_t texts) {
    for (const IdValue* id : {&key.job, &key.task, &key.project}) {
      if (id->kind == IdValue::Kind::Text && static_cast<std::size_t>(id->number) >= texts) return false;
    }
    return true;
  }

  static Status read_row(const Value& value, std::size_t texts, OpenRow& row) {
    auto f = value.elements();
    if (!value.is_array() || f.size() != 11 || !f[6].is_int() || !f[7].is_int() || !f[8].is_string() ||
        !f[9].is_array() || !f[10].is_string()) {
      return Error("an open row is malformed");
    }
    if (Status ids = read_ids(f.data(), texts, row.key); !ids.ok()) return ids;
    row.open = true;
    row.nanos = f[6].as_int();
    row.first_time = f[7].as_int();
    row.timestamp = std::string(f[8].as_string());
    row.copied.clear();
    for (const Value& c : f[9].elements()) {
      if (!c.is_string()) return Error("an open row is malformed");
      row.copied.emplace_back(c.as_string());
    }
    row.request_id = std::string(f[10].as_string());
    return {};
  }

  static bool listed(const std::vector<std::string>& list, std::string_view value) {
    return std::find(list.begin(), list.end(), value) != list.end();
  }

  // A client's `duration` (ms) in ns, held to +-1 year: longer is no time a person
  // worked, and the bound keeps the product (and timestamp + duration) inside int64. Not
  // a number (NaN, infinite, text) counts as 0, as an absent one does.
  static EpochNanos duration_nanos(const Value* d) {
    constexpr std::int64_t kMaxMs = 366LL * 86'400'000;
    if (d == nullptr) return 0;
    if (d->is_int()) return std::clamp<std::int64_t>(d->as_int(), -kMaxMs, kMaxMs) * 1'000'000;
    if (d->is_uint()) return kMaxMs * 1'000'000;  // above INT64_MAX
    if (d->is_double() && std::isfinite(d->as_double())) {
      return static_cast<EpochNanos>(std::clamp(d->as_double(), -double(kMaxMs), double(kMaxMs)) * 1e6);
    }
    return 0;
  }

  IdValue id_of(const Value* v) {
    IdValue id;
    if (v == nullptr || v->is_null()) return id;
    if (v->is_int()) {
      id.kind = IdValue::Kind::Int;
      id.number = v->as_int();
      return id;
    }
    // Anything else by its text: a string as it is, other values as JSON.
    id.kind = IdValue::Kind::Text;
    id.number = intern(v->is_string() ? std::string(v->as_string()) : to_json(*v));
    return id;
  }

  // A text id's index in the table, added when new.
  std::int64_t intern(const std::string& text) {
    auto found = text_ids_.find(text);
    if (found == text_ids_.end()) {
      found = text_ids_.emplace(text, static_cast<std::int64_t>(texts_.size())).first;
      texts_.push_back(text);
    }
    return found->second;
  }

  Value id_value(Arena& arena, const IdValue& id) const {
    switch (id.kind) {
      case IdValue::Kind::Int: return Value::integer(id.number);
      case IdValue::Kind::Text: return Value::string(arena, texts_[static_cast<std::size_t>(id.number)]);
      default: return Value::null();
    }
  }

  void open_row(UserClock& clock, const WorkKey& key, EpochNanos at, const Value& timestamp, const Event& event) {
    OpenRow& row = clock.row;
    row.open = true;
    row.key = key;
    row.nanos = 0;
    row.first_time = at;
    row.timestamp = to_json(timestamp);
    row.copied.clear();
    for (const FieldPath& field : copy_paths_) {
      const Value* v = field.find(event.fields);
      row.copied.push_back(v ? to_json(*v) : std::string("null"));
    }
    const Value* id = request_id_.find(event.metadata);
    row.request_id = id != nullptr && !id->is_null() ? to_json(*id) : std::string();
    partitions_[clock.partition].idle.push(IdleCheck{clock.seen_at + idle_after_, next_check_++, &clock});
  }

  // The open row of `clock` as an event in `arena`, its milliseconds floored with the
  // remainder carried to the key's next row; the row is closed. Nothing when none is open.
  std::optional<Event> take_row(UserClock& clock, Arena& arena) {
    OpenRow& row = clock.row;
    if (!row.open) return std::nullopt;
    row.open = false;
    auto carry = clock.carry_ns.find(row.key);
    std::int64_t sum = (carry == clock.carry_ns.end() ? 0 : carry->second) + row.nanos;
    std::int64_t ms = floor_div(sum, 1'000'000);
    std::int64_t rest = sum - ms * 1'000'000;
    if (rest != 0) clock.carry_ns.insert_or_assign(carry, row.key, rest);
    else if (carry != clock.carry_ns.end()) clock.carry_ns.erase(carry);
    return Event{make_event(arena, row, ms, user_of(clock)), Value::null()};
  }

  // Closes a row while a batch is processed: it goes after the event that closed it.
  void close_row(UserClock& clock, Arena& arena, std::size_t position) {
    if (auto made = take_row(clock, arena)) rows_.push_back({position, *made});
  }
  void emit_row(UserClock& clock, Arena& arena, std::vector<Event>& out) {
    if (auto made = take_row(clock, arena)) out.push_back(*made);
  }

  // The rows of users idle for idle_after by the pipeline's time `now`.
  template <typename Emit>
  void for_each_idle(PartitionClock& part, EpochNanos now, Emit&& emit) {
    auto& idle = part.idle;
    while (!idle.empty() && idle.top().due <= now) {
      IdleCheck check = idle.top();
      idle.pop();
      UserClock& clock = *check.clock;
      if (!clock.row.open) continue;
      EpochNanos due = clock.seen_at + idle_after_;
      if (due > now) {
        idle.push(IdleCheck{due, next_check_++, &clock});  // active since: look again then
        continue;
      }
      emit(clock);
    }
  }
  void close_idle(PartitionClock& part, EpochNanos now, Arena& arena, std::size_t position) {
    for_each_idle(part, now, [&](UserClock& clock) { close_row(clock, arena, position); });
  }

  // The clocks are process()'s, which may run off the loop: the timer reaches them through
  // run_exclusive (ADR 015).
  void on_idle_timer() {
    ctx_->run_exclusive([this](TransformContext& ctx) {
      // Only the input without partitions goes by the system clock (ADR 017).
      auto found = partitions_.find(kUnpartitioned);
      if (found == partitions_.end()) return;
      auto batch = EventBatch::create();
      for_each_idle(found->second, ctx.clock().now(),
                    [&](UserClock& clock) { emit_row(clock, batch->arena(), batch->events()); });
      if (!batch->empty()) ctx.emit(std::move(batch));
    });
  }

  // rows_ into the events, each before the event at its position.
  void place_rows(std::vector<Event>& events) {
    std::vector<Event> merged;
    merged.reserve(events.size() + rows_.size());
    std::size_t r = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      while (r < rows_.size() && rows_[r].position == i) merged.push_back(rows_[r++].event);
      merged.push_back(events[i]);
    }
    while (r < rows_.size()) merged.push_back(rows_[r++].event);
    events.swap(merged);
    rows_.clear();
  }

  std::vector<UserClock*> users_in_order(bool open_only = true) {
    std::vector<std::pair<const std::string*, UserClock*>> users;
    for (auto& [user, clock] : clocks_) {
      if (!open_only || clock.row.open) users.emplace_back(&user, &clock);
    }
    std::sort(users.begin(), users.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
    std::vector<UserClock*> out;
    for (const auto& entry : users) out.push_back(entry.second);
    return out;
  }

  const std::string& user_of(const UserClock& clock) const { return *clock_users_.at(&clock); }

  // A value the row kept as JSON text (so its snapshot is plain text), back as a Value. The
  // text is to_json's, so the usual ones (a string without escapes, an integer, null) are
  // read here; simdjson's parse per field was most of a row's cost.
  Value parse_own_json(std::string_view text, Arena& arena) {
    if (text.size() >= 2 && text.front() == '"' && text.back() == '"' &&
        text.find('\\') == std::string_view::npos) {
      return Value::string(arena, text.substr(1, text.size() - 2));
    }
    if (text == "null") return Value::null();
    if (!text.empty() && (text.front() == '-' || (text.front() >= '0' && text.front() <= '9'))) {
      std::int64_t number = 0;
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
      if (error == std::errc() && end == text.data() + text.size()) return Value::integer(number);
    }
    auto parsed = json_.parse(text, arena);
    return parsed.ok() ? deep_copy(parsed.value(), arena) : Value::null();
  }

  Value make_event(Arena& arena, const OpenRow& row, std::int64_t ms, const std::string& user) {
    Value f = Value::object(arena, 17);
    f.append_member(arena, "scope", Value::string_view("send:working_time"));
    f.append_member(arena, "obj_name", Value::null());
    f.append_member(arena, "obj_id", Value::null());
    f.append_member(arena, "obj_val", Value::null());
    f.append_member(arena, "source", Value::string_view("server"));
    f.append_member(arena, "timestamp", parse_own_json(row.timestamp, arena));
    f.append_member(arena, "count", Value::integer(1));
    f.append_member(arena, "duration", Value::integer(ms));
    f.append_member(arena, arena.copy(project_field_), id_value(arena, row.key.project));
    f.append_member(arena, arena.copy(task_field_), id_value(arena, row.key.task));
    f.append_member(arena, arena.copy(job_field_), id_value(arena, row.key.job));
    f.append_member(arena, arena.copy(user_field_), parse_own_json(user, arena));
    for (std::size_t i = 0; i < copy_fields_.size(); ++i) {
      f.append_member(arena, arena.copy(copy_fields_[i]),
                      i < row.copied.size() ? parse_own_json(row.copied[i], arena) : Value::null());
    }
    // CVAT's payload; `request` only when the time came with an HTTP request.
    std::string payload = row.request_id.empty()
                              ? fmt::format("{{\"working_time\":{}}}", ms)
                              : fmt::format("{{\"working_time\":{},\"request\":{{\"id\":{}}}}}", ms, row.request_id);
    f.append_member(arena, "payload", Value::string(arena, payload));
    return f;
  }

  UserClock& clock_of(const Value& user) {
    // Integer user ids (CVAT's) go through a small direct-mapped cache first.
    RecentUser* recent = nullptr;
    if (user.is_int()) {
      recent = &recent_[static_cast<std::uint64_t>(user.as_int()) % recent_.size()];
      if (recent->clock != nullptr && recent->id == user.as_int()) return *recent->clock;
    }
    key_text_.clear();
    write_json(user, key_text_);
    auto found = clocks_.find(key_text_.view());
    if (found == clocks_.end()) {
      found = clocks_.emplace(std::string(key_text_.view()), UserClock()).first;
      clock_users_[&found->second] = &found->first;
    }
    if (recent != nullptr) *recent = RecentUser{user.as_int(), &found->second};
    return found->second;
  }

  // Memory only: a user whose events have not come for `state_ttl` of the pipeline's time
  // is dropped (an open row is emitted first). Whether a returning user starts afresh is
  // decided by that user's own event time (the reset in process()), never by another
  // user's timestamps: a client with a clock in the future would otherwise make everyone
  // else look idle.
  void evict_idle(const std::string& partition, EpochNanos now, Arena& arena, std::vector<Event>& out) {
    PartitionClock& part = partitions_[partition];
    if (now - part.last_eviction < 1'000'000'000) return;
    part.last_eviction = now;
    std::vector<UserClock*> gone;
    for (UserClock* clock : users_in_order(false)) {
      if (clock->partition == partition && now - clock->seen_at >= ttl_) gone.push_back(clock);
    }
    if (gone.empty()) return;
    for (UserClock* clock : gone) emit_row(*clock, arena, out);
    std::erase_if(clocks_, [&](const auto& entry) {
      return std::find(gone.begin(), gone.end(), &entry.second) != gone.end();
    });
    for (UserClock* clock : gone) clock_users_.erase(clock);
    recent_.fill(RecentUser{});  // it may point at erased clocks
    rebuild_idle_checks();
  }

  void rebuild_idle_checks() {
    for (auto& [partition, part] : partitions_) part.idle = {};
    for (UserClock* clock : users_in_order()) {
      partitions_[clock->partition].idle.push(IdleCheck{clock->seen_at + idle_after_, next_check_++, clock});
    }
  }

  WorkingTimeParams params_;
  std::vector<std::string> compressed_, sources_, copy_fields_;
  std::string user_field_, job_field_, task_field_, project_field_;
  FieldPath source_{"source"}, scope_{"scope"}, timestamp_{"timestamp"}, duration_{"duration"};
  FieldPath user_, job_, task_, project_, request_id_{"request_id"};
  std::vector<FieldPath> copy_paths_;
  WorkKey ids_;  // of the current event
  EpochNanos ttl_ = 0;
  EpochNanos interval_ = 0;   // emit_interval
  EpochNanos idle_after_ = 0;
  TransformContext* ctx_ = nullptr;
  UvTimer idle_timer_;
  static constexpr std::uint64_t kIdleCheckMs = 1000;
  // Rows closed while a batch is processed, with the position they go to.
  struct PlacedRow {
    std::size_t position;
    Event event;
  };
  std::vector<PlacedRow> rows_;
  std::uint64_t next_check_ = 0;
  std::unordered_map<const UserClock*, const std::string*> clock_users_;  // each clock's user (JSON)
  JsonParser json_;
  // Keyed by the user value as JSON; looked up by string_view, so no allocation per event.
  struct TextHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
  };
  std::unordered_map<std::string, UserClock, TextHash, std::equal_to<>> clocks_;  // nodes never move
  struct RecentUser {
    std::int64_t id = 0;
    UserClock* clock = nullptr;
  };
  std::array<RecentUser, 64> recent_{};
  // Interned text ids (IdValue::Kind::Text); they grow with the distinct text ids seen.
  std::unordered_map<std::string, std::int64_t> text_ids_;
  std::vector<std::string> texts_;
  ByteBuffer key_text_;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("working_time", "CVAT's working time per user and job, emitted as send:working_time events",
                        kSchema, WorkingTime::create);

}  // namespace weir::plugins
