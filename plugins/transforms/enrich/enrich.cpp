// `enrich` transform: set, copy, rename and remove fields; static values and now(); a
// lookup table (CSV or NDJSON) joined on a key field and reloaded atomically when its file
// changes; timestamp normalisation; JSON text fields parsed into objects and back.
// Steps run in this order: parse_json, lookup, rename, copy, set, set_if_missing, remove,
// timestamp, stringify_json.
#include <sys/stat.h>

#include <fmt/format.h>

#include "lookup_table.hpp"
#include "weir/field_path.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/time.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "set", .type = OptionType::Map,
     .doc = "field.path: value. Values are YAML scalars (or lists, maps); `now()` is the time of processing (ISO-8601 ms)."},
    {.name = "set_if_missing", .type = OptionType::Map, .doc = "Like `set`, only where the field is absent or null."},
    {.name = "rename", .type = OptionType::Map, .doc = "from.path: to.path."},
    {.name = "copy", .type = OptionType::Map, .doc = "from.path: to.path."},
    {.name = "remove", .type = OptionType::StringList, .doc = "Field paths to remove."},
    {.name = "parse_json", .type = OptionType::StringList, .doc = "Fields holding JSON text to turn into objects."},
    {.name = "stringify_json", .type = OptionType::StringList, .doc = "Fields to turn back into JSON text."},
    {.name = "lookup.file", .type = OptionType::String, .doc = "CSV (with a header row) or NDJSON file of rows."},
    {.name = "lookup.key_field", .type = OptionType::String, .doc = "Event field whose value is looked up."},
    {.name = "lookup.table_key", .type = OptionType::String, .doc = "Column of the table holding the key (default: key_field)."},
    {.name = "lookup.fields", .type = OptionType::StringList, .doc = "Columns copied onto the event (default: all but the key)."},
    {.name = "lookup.on_missing", .type = OptionType::Enum, .default_value = "leave",
     .choices = {"leave", "default", "dead_letter"},
     .doc = "No row for the key: leave the event as it is, set `lookup.defaults`, or dead-letter it."},
    {.name = "lookup.defaults", .type = OptionType::Map, .doc = "Column values used when on_missing is `default`."},
    {.name = "lookup.reload_interval", .type = OptionType::Duration, .default_value = "5s",
     .doc = "How often the file is checked for changes (0s: never)."},
    {.name = "timestamp.field", .type = OptionType::String, .doc = "Field to normalise."},
    {.name = "timestamp.format", .type = OptionType::Enum, .default_value = "iso8601_ms",
     .choices = {"iso8601_ms", "datetime", "epoch_ms", "epoch_seconds"},
     .doc = "`iso8601_ms`: 2024-01-01T12:00:00.123Z; `datetime`: 2024-01-01 12:00:00 (UTC, what ClickHouse 18.16 "
            "DateTime takes); `epoch_ms`: integer; `epoch_seconds`: \"1704110400.123\"."},
};

struct PathPair {
  FieldPath from, to;
};

std::vector<FieldPath> compile(const std::vector<std::string>& paths) {
  return std::vector<FieldPath>(paths.begin(), paths.end());
}

class Enrich final : public Transform {
 public:
  static Result<std::unique_ptr<Enrich>> create(const Options& o) {
    auto self = std::make_unique<Enrich>();
    auto pairs = [&](std::string_view name, std::vector<PathPair>& out) -> Status {
      if (const Value* map = o.find(name)) {
        for (const Member& m : map->members()) {
          if (!m.value.is_string()) return o.error_at(name, fmt::format("'{}' must map '{}' to a field path", name, m.key));
          out.push_back({FieldPath(m.key), FieldPath(m.value.as_string())});
        }
      }
      return {};
    };
    if (Status s = pairs("rename", self->rename_); !s.ok()) return s.error();
    if (Status s = pairs("copy", self->copy_); !s.ok()) return s.error();
    auto values = [&](std::string_view name, std::vector<std::pair<FieldPath, Value>>& out) {
      if (const Value* map = o.find(name)) {
        for (const Member& m : map->members()) out.emplace_back(FieldPath(m.key), deep_copy(m.value, self->arena_));
      }
    };
    values("set", self->set_);
    values("set_if_missing", self->set_if_missing_);
    self->remove_ = compile(o.strings("remove"));
    self->parse_json_ = compile(o.strings("parse_json"));
    self->stringify_json_ = compile(o.strings("stringify_json"));
    self->lookup_file_ = std::string(o.string("lookup.file"));
    if (!self->lookup_file_.empty()) {
      self->key_field_ = std::string(o.string("lookup.key_field"));
      if (self->key_field_.empty()) return o.error_at("lookup.file", "a lookup needs lookup.key_field");
      self->key_path_ = FieldPath(self->key_field_);
      self->table_key_ = o.has("lookup.table_key") ? std::string(o.string("lookup.table_key")) : self->key_field_;
      self->lookup_fields_ = o.strings("lookup.fields");
      self->lookup_paths_ = compile(self->lookup_fields_);
      std::string_view missing = o.string("lookup.on_missing");
      self->on_missing_ = missing == "default" ? Missing::Default : missing == "dead_letter" ? Missing::DeadLetter : Missing::Leave;
      values("lookup.defaults", self->defaults_);
      self->reload_ms_ = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(o.duration("lookup.reload_interval")).count());
    }
    self->timestamp_path_ = FieldPath(o.string("timestamp.field"));
    std::string_view format = o.string("timestamp.format");
    self->format_ = format == "datetime" ? Format::DateTime
                    : format == "epoch_ms" ? Format::EpochMs
                    : format == "epoch_seconds" ? Format::EpochSeconds
                                                : Format::IsoMs;
    return self;
  }

  Status start(TransformContext& ctx) override {
    ctx_ = &ctx;
    if (lookup_file_.empty()) return {};
    auto table = LookupTable::load(lookup_file_, table_key_);
    if (!table.ok()) return table.error();
    table_ = table.value();
    stamp_ = file_stamp();
    log::info(ctx.name(), "lookup table {}: {} rows", lookup_file_, table_->size());
    if (reload_ms_ > 0) {
      start_timer(reload_timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<Enrich*>(t->data)->check_reload(); },
                  reload_ms_, reload_ms_);
      uv_unref(reload_timer_.base());
    }
    return {};
  }

  // process() touches the batch and its own members only; the table is swapped in through
  // run_exclusive: it may run where the batch was decoded (ADR 015).
  bool runs_off_loop() const override { return true; }

  void process(BatchPtr batch, TransformContext& ctx) override {
    Arena& arena = batch->arena();
    // Joined values point into the table: the batch keeps this table alive past a reload.
    if (table_) batch->retain(table_);
    std::vector<Event>& events = batch->events();
    std::size_t kept = 0;
    std::optional<Value> now;
    for (std::size_t i = 0; i < events.size(); ++i) {
      Event& event = events[i];
      prefetch_ahead(events, i);  // the batch was decoded on another core
      Value& f = event.fields;
      for (const FieldPath& field : parse_json_) {
        Value* v = field.find(f);
        if (v == nullptr || !v->is_string()) continue;
        auto parsed = parser_.parse(v->as_string(), arena);
        if (parsed.ok()) *v = parsed.value();
        else ctx.metrics().errors.add();  // left as text
      }
      if (table_ && !join(event, arena, ctx)) continue;
      for (const PathPair& p : rename_) {
        if (const Value* v = p.from.find(f)) {
          Value moved = *v;
          p.from.erase(f);
          p.to.set(arena, f, moved);
        }
      }
      for (const PathPair& p : copy_) {
        if (const Value* v = p.from.find(f)) p.to.set(arena, f, deep_copy(*v, arena));
      }
      auto value_of = [&](const Value& configured) {
        if (configured.is_string() && configured.as_string() == "now()") {
          if (!now) now = Value::string(arena, format_iso8601_ms(ctx.clock().now()));
          return *now;
        }
        return configured;  // lives in this transform's arena, which outlives the batch
      };
      for (const auto& [path, value] : set_) path.set(arena, f, value_of(value));
      for (const auto& [path, value] : set_if_missing_) {
        const Value* existing = path.find(f);
        if (existing == nullptr || existing->is_null()) path.set(arena, f, value_of(value));
      }
      for (const FieldPath& path : remove_) path.erase(f);
      if (!timestamp_path_.empty() && !normalise_time(event, arena, ctx)) continue;
      for (const FieldPath& field : stringify_json_) {
        Value* v = field.find(f);
        if (v != nullptr && (v->is_object() || v->is_array())) *v = Value::string(arena, to_json(*v));
      }
      events[kept++] = event;
    }
    events.resize(kept);
    ctx.emit(std::move(batch));
  }

 private:
  enum class Missing { Leave, Default, DeadLetter };
  enum class Format { IsoMs, DateTime, EpochMs, EpochSeconds };

  // Returns false when the event was dead-lettered.
  bool join(Event& event, Arena& arena, TransformContext& ctx) {
    const Value* key = key_path_.find(event.fields);
    const Value* row = key && !key->is_null() ? table_->find(LookupTable::key_text(*key)) : nullptr;
    if (row == nullptr) {
      if (on_missing_ == Missing::DeadLetter) {
        ctx.dead_letter(event, fmt::format("enrich: no row in {} for {} {}", lookup_file_, key_field_,
                                           key ? to_json(*key) : std::string("(absent)")));
        return false;
      }
      if (on_missing_ == Missing::Default) {
        for (const auto& [column, value] : defaults_) column.set(arena, event.fields, value);
      }
      return true;
    }
    // The row lives in the table's arena; the batch keeps that table alive.
    if (!lookup_fields_.empty()) {
      for (std::size_t i = 0; i < lookup_fields_.size(); ++i) {
        if (const Value* v = row->find(lookup_fields_[i])) lookup_paths_[i].set(arena, event.fields, *v);
      }
    } else {
      for (const Member& m : row->members()) {
        if (m.key != table_key_) event.fields.set(arena, m.key, m.value);
      }
    }
    return true;
  }

  bool normalise_time(Event& event, Arena& arena, TransformContext& ctx) {
    Value* v = timestamp_path_.find(event.fields);
    if (v == nullptr || v->is_null()) return true;
    auto at = parse_timestamp(*v);
    if (!at.ok()) {
      ctx.dead_letter(event, "enrich: " + at.error().message());
      return false;
    }
    EpochNanos t = at.value();
    std::int64_t ms = t / 1'000'000 - (t % 1'000'000 < 0 ? 1 : 0);
    text_.clear();
    switch (format_) {
      case Format::IsoMs: format_iso8601_ms(t, text_); break;
      case Format::EpochMs: *v = Value::integer(ms); return true;
      case Format::EpochSeconds: {
        std::int64_t sec = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
        text_.append(fmt::format("{}.{:03}", sec, ms - sec * 1000));
        break;
      }
      case Format::DateTime: {
        format_iso8601(t, 0, text_);  // 2024-01-01T12:00:00Z
        text_.data()[10] = ' ';
        text_.truncate(19);
        break;
      }
    }
    *v = Value::string(arena, text_.view());
    return true;
  }

  std::pair<std::int64_t, std::int64_t> file_stamp() const {
    struct stat st {};
    if (stat(lookup_file_.c_str(), &st) != 0) return {0, 0};
    return {static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
            static_cast<std::int64_t>(st.st_size)};
  }

  // The new table is built on the thread pool and swapped in on the loop: batches being
  // processed keep the table they started with, and a broken file keeps the old table.
  void check_reload() {
    if (reloading_) return;
    auto stamp = file_stamp();
    if (stamp == stamp_ || stamp.first == 0) return;
    stamp_ = stamp;
    reloading_ = true;
    auto job = std::make_unique<ReloadJob>();
    job->work.data = job.get();
    job->self = this;
    job->path = lookup_file_;
    job->key = table_key_;
    int rc = uv_queue_work(
        ctx_->loop(), &job->work,
        [](uv_work_t* w) {
          auto* j = static_cast<ReloadJob*>(w->data);
          j->result = LookupTable::load(j->path, j->key);
        },
        [](uv_work_t* w, int) {
          std::unique_ptr<ReloadJob> j(static_cast<ReloadJob*>(w->data));
          if (j->self != nullptr) j->self->reloaded(std::move(j->result));
        });
    if (rc == 0) {
      job_ = job.release();
    } else {
      reloading_ = false;
    }
  }

  struct ReloadJob {
    uv_work_t work{};
    Enrich* self = nullptr;
    std::string path, key;
    Result<std::shared_ptr<LookupTable>> result{Error("not loaded")};
  };

  void reloaded(Result<std::shared_ptr<LookupTable>> result) {
    job_ = nullptr;
    reloading_ = false;
    if (!result.ok()) {
      log::error(ctx_->name(), "reloading the lookup table failed, keeping the old one: {}", result.error().message());
      ctx_->metrics().errors.add();
      return;
    }
    // process() may be running off the loop with the old table (ADR 015).
    ctx_->run_exclusive([this, table = result.value()](TransformContext&) { table_ = table; });
    log::info(ctx_->name(), "lookup table {} reloaded: {} rows", lookup_file_, result.value()->size());
  }

 public:
  ~Enrich() override {
    if (job_ != nullptr) job_->self = nullptr;
  }

 private:
  Arena arena_{1024};
  std::vector<PathPair> rename_, copy_;
  std::vector<std::pair<FieldPath, Value>> set_, set_if_missing_, defaults_;
  std::vector<FieldPath> remove_, parse_json_, stringify_json_, lookup_paths_;
  std::vector<std::string> lookup_fields_;  // columns of the table, set at lookup_paths_
  std::string lookup_file_, key_field_, table_key_;
  FieldPath key_path_, timestamp_path_;
  ByteBuffer text_;
  Missing on_missing_ = Missing::Leave;
  Format format_ = Format::IsoMs;
  std::uint64_t reload_ms_ = 0;
  std::shared_ptr<LookupTable> table_;
  std::pair<std::int64_t, std::int64_t> stamp_{0, 0};
  bool reloading_ = false;
  ReloadJob* job_ = nullptr;
  UvTimer reload_timer_;
  TransformContext* ctx_ = nullptr;
  JsonParser parser_;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("enrich", "Sets, copies, renames, removes fields; joins a lookup table; normalises timestamps",
                        kSchema, Enrich::create);

}  // namespace weir::plugins
