// `working_time` transform: CVAT's working time per (user, job, task, project), computed in
// the pipeline and emitted as `send:working_time` events exactly as CVAT stores them.
// Every input event passes through; the computed events follow them in the same batch.
#include <array>
#include <unordered_map>

#include <fmt/format.h>

#include "weir/field_path.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
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
    {.name = "state_ttl", .type = OptionType::Duration, .default_value = "0s",
     .doc = "Forget a user idle this long in event time (0: never). Must be at least `threshold`: see the docs "
            "for the one case where forgetting moves time between a user's keys."},
};

std::int64_t floor_div(std::int64_t a, std::int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

class WorkingTime final : public Transform {
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
    self->ttl_ = o.duration("state_ttl").count();
    if (self->ttl_ != 0 && self->ttl_ < self->params_.threshold) {
      return o.error_at("state_ttl", "state_ttl must be 0 (never) or at least threshold");
    }
    return self;
  }

  void process(BatchPtr batch, TransformContext& ctx) override {
    Arena& arena = batch->arena();
    struct Total {
      UserClock* clock;  // map nodes do not move
      WorkKey key;
      EpochNanos nanos = 0;
      Value timestamp;   // of the first event counted for the key in this batch
      Value user_id;
      std::vector<Value> copied;
      Value request_id;
    };
    std::vector<Total> totals;  // a handful per batch: found by a linear scan

    std::vector<Event>& events = batch->events();
    std::size_t kept = 0;
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
      EpochNanos end = timestamp.value();
      if (scope != nullptr && listed(compressed_, scope_text)) end += duration_nanos(duration_.find(event.fields));
      UserClock& clock = clock_of(*user);
      if (ttl_ > 0 && ctx.loop() != nullptr) touched_[&clock] = uv_now(ctx.loop());
      if (ttl_ > 0 && clock.started && timestamp.value() - clock.last_seen >= ttl_) clock = UserClock();
      ids_.job = id_of(job_.find(event.fields));
      ids_.task = id_of(task_.find(event.fields));
      ids_.project = id_of(project_.find(event.fields));
      Step step = advance(clock, params_, timestamp.value(), end, ids_);
      if (step.nanos <= 0) continue;
      auto total = std::find_if(totals.begin(), totals.end(),
                                [&](const Total& t) { return t.clock == &clock && t.key == step.key; });
      if (total == totals.end()) {
        Total t;
        t.clock = &clock;
        t.key = step.key;
        t.timestamp = *ts_value;
        t.user_id = *user;
        for (const FieldPath& field : copy_paths_) {
          const Value* v = field.find(event.fields);
          t.copied.push_back(v ? *v : Value::null());
        }
        if (const Value* id = request_id_.find(event.metadata)) t.request_id = *id;
        totals.push_back(std::move(t));
        total = totals.end() - 1;
      }
      total->nanos += step.nanos;
    }
    events.resize(kept);

    for (Total& t : totals) {
      std::int64_t& carry = t.clock->carry_ns[t.key.str()];
      std::int64_t sum = carry + t.nanos;
      std::int64_t ms = floor_div(sum, 1'000'000);
      carry = sum - ms * 1'000'000;
      events.push_back(Event{make_event(arena, t.timestamp, ms, t.key, t.user_id, t.copied, t.request_id), Value::null()});
    }
    if (ttl_ > 0 && ctx.loop() != nullptr) evict_idle(uv_now(ctx.loop()));
    ctx.emit(std::move(batch));
  }

  // The per-user clocks (and the text ids their keys refer to) survive restarts.
  bool keeps_state() const override { return true; }

  // {"texts":[..],"users":[[user as JSON text, prev_end, started, last_seen,
  //   job kind, job number, task kind, task number, project kind, project number, {carry key: ns}], ..]}
  std::string snapshot() const override {
    ByteBuffer out;
    out.append(R"({"texts":[)");
    for (std::size_t i = 0; i < texts_.size(); ++i) {
      if (i) out.push_back(',');
      write_json_string(texts_[i], out);
    }
    out.append(R"(],"users":[)");
    // In the users' order, so the same state always gives the same bytes.
    std::vector<const std::pair<const std::string, UserClock>*> users;
    for (const auto& entry : clocks_) users.push_back(&entry);
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
        write_json_string(key, out);
        out.append(fmt::format(":{}", ns));
      }
      out.append("}]");
    }
    out.append("]}");
    return std::string(out.view());
  }

  Status restore(std::string_view snapshot) override {
    Arena arena;
    JsonParser parser;
    auto parsed = parser.parse(snapshot, arena);
    if (!parsed.ok()) return parsed.error();
    const Value* texts = parsed.value().find("texts");
    const Value* users = parsed.value().find("users");
    if (!texts || !texts->is_array() || !users || !users->is_array()) return Error("not a working_time snapshot");
    decltype(clocks_) clocks;
    std::vector<std::string> restored_texts;
    for (const Value& text : texts->elements()) {
      if (!text.is_string()) return Error("a text id is not a string");
      restored_texts.emplace_back(text.as_string());
    }
    for (const Value& entry : users->elements()) {
      auto fields = entry.elements();
      if (!entry.is_array() || fields.size() != 11 || !fields[0].is_string() || !fields[10].is_object()) {
        return Error("a user's clock is malformed");
      }
      for (std::size_t i = 1; i < 10; ++i) {
        if (!fields[i].is_int()) return Error("a user's clock is malformed");
      }
      UserClock clock;
      clock.prev_end = fields[1].as_int();
      clock.started = fields[2].as_int() != 0;
      clock.last_seen = fields[3].as_int();
      IdValue* ids[] = {&clock.prev_ids.job, &clock.prev_ids.task, &clock.prev_ids.project};
      for (std::size_t k = 0; k < 3; ++k) {
        std::int64_t kind = fields[4 + 2 * k].as_int();
        if (kind < 0 || kind > 2) return Error("a user's clock is malformed");
        ids[k]->kind = static_cast<IdValue::Kind>(kind);
        ids[k]->number = fields[5 + 2 * k].as_int();
        if (ids[k]->kind == IdValue::Kind::Text && static_cast<std::size_t>(ids[k]->number) >= restored_texts.size()) {
          return Error("a user's clock names a text id the snapshot lacks");
        }
      }
      for (const auto& member : fields[10].members()) {
        if (!member.value.is_int()) return Error("a carry is not an integer");
        clock.carry_ns[std::string(member.key)] = member.value.as_int();
      }
      clocks.emplace(std::string(fields[0].as_string()), std::move(clock));
    }
    clocks_ = std::move(clocks);
    texts_ = std::move(restored_texts);
    text_ids_.clear();
    for (std::size_t i = 0; i < texts_.size(); ++i) text_ids_.emplace(texts_[i], static_cast<std::int64_t>(i));
    recent_.fill(RecentUser{});
    touched_.clear();
    return {};
  }

 private:
  static bool listed(const std::vector<std::string>& list, std::string_view value) {
    return std::find(list.begin(), list.end(), value) != list.end();
  }

  static EpochNanos duration_nanos(const Value* d) {
    if (d == nullptr) return 0;
    if (d->is_int()) return d->as_int() * 1'000'000;
    if (d->is_double()) return static_cast<EpochNanos>(d->as_double() * 1e6);
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
    std::string text = v->is_string() ? std::string(v->as_string()) : to_json(*v);
    auto found = text_ids_.find(text);
    if (found == text_ids_.end()) {
      found = text_ids_.emplace(text, static_cast<std::int64_t>(texts_.size())).first;
      texts_.push_back(text);
    }
    id.kind = IdValue::Kind::Text;
    id.number = found->second;
    return id;
  }

  Value id_value(Arena& arena, const IdValue& id) const {
    switch (id.kind) {
      case IdValue::Kind::Int: return Value::integer(id.number);
      case IdValue::Kind::Text: return Value::string(arena, texts_[static_cast<std::size_t>(id.number)]);
      default: return Value::null();
    }
  }

  Value make_event(Arena& arena, const Value& timestamp, std::int64_t ms, const WorkKey& key, const Value& user,
                   const std::vector<Value>& copied, const Value& request_id) const {
    Value f = Value::object(arena, 17);
    f.append_member(arena, "scope", Value::string_view("send:working_time"));
    f.append_member(arena, "obj_name", Value::null());
    f.append_member(arena, "obj_id", Value::null());
    f.append_member(arena, "obj_val", Value::null());
    f.append_member(arena, "source", Value::string_view("server"));
    f.append_member(arena, "timestamp", timestamp);
    f.append_member(arena, "count", Value::integer(1));
    f.append_member(arena, "duration", Value::integer(ms));
    f.append_member(arena, arena.copy(project_field_), id_value(arena, key.project));
    f.append_member(arena, arena.copy(task_field_), id_value(arena, key.task));
    f.append_member(arena, arena.copy(job_field_), id_value(arena, key.job));
    f.append_member(arena, arena.copy(user_field_), user);
    for (std::size_t i = 0; i < copy_fields_.size(); ++i) f.append_member(arena, arena.copy(copy_fields_[i]), copied[i]);
    ByteBuffer payload;
    payload.append(fmt::format("{{\"working_time\":{},\"request\":{{\"id\":", ms));
    write_json(request_id, payload);
    payload.append("}}");
    f.append_member(arena, "payload", Value::string(arena, payload.view()));
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
    if (found == clocks_.end()) found = clocks_.emplace(std::string(key_text_.view()), UserClock()).first;
    if (recent != nullptr) *recent = RecentUser{user.as_int(), &found->second};
    return found->second;
  }

  // Memory only: a user whose events have not come for `state_ttl` of the loop's clock is
  // dropped. Whether a returning user starts afresh is decided by that user's own event
  // time (the reset in process()), never by another user's timestamps: a client with a
  // clock in the future would otherwise make everyone else look idle.
  void evict_idle(std::uint64_t now_ms) {
    std::uint64_t ttl_ms = static_cast<std::uint64_t>(ttl_ / 1'000'000);
    if (now_ms - last_eviction_ms_ < 1000) return;
    last_eviction_ms_ = now_ms;
    for (const auto& [user, clock] : clocks_) touched_.try_emplace(&clock, now_ms);  // restored ones
    std::size_t erased = std::erase_if(clocks_, [&](const auto& entry) {
      auto touched = touched_.find(&entry.second);
      if (touched == touched_.end() || now_ms - touched->second < ttl_ms) return false;
      touched_.erase(touched);
      return true;
    });
    if (erased > 0) recent_.fill(RecentUser{});  // it may point at erased clocks
  }

  WorkingTimeParams params_;
  std::vector<std::string> compressed_, sources_, copy_fields_;
  std::string user_field_, job_field_, task_field_, project_field_;
  FieldPath source_{"source"}, scope_{"scope"}, timestamp_{"timestamp"}, duration_{"duration"};
  FieldPath user_, job_, task_, project_, request_id_{"request_id"};
  std::vector<FieldPath> copy_paths_;
  WorkKey ids_;  // of the current event
  EpochNanos ttl_ = 0;
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
  // state_ttl: when each clock last saw an event, by the loop's clock (ms).
  std::unordered_map<const UserClock*, std::uint64_t> touched_;
  std::uint64_t last_eviction_ms_ = 0;
  // Interned text ids (IdValue::Kind::Text); they grow with the distinct text ids seen.
  std::unordered_map<std::string, std::int64_t> text_ids_;
  std::vector<std::string> texts_;
  ByteBuffer key_text_;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("working_time", "CVAT's working time per user and job, emitted as send:working_time events",
                        kSchema, WorkingTime::create);

}  // namespace weir::plugins
