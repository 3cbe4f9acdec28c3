// `demo` source: CVAT-like user-activity events (the 17 columns of cvat.events), from a
// seeded generator, in event time: the same seed and start_time give the same events.
#include <uv.h>

#include <array>
#include <random>

#include <fmt/format.h>

#include "weir/json.hpp"
#include "weir/registry.hpp"
#include "weir/time.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "count", .type = OptionType::Integer, .default_value = "0",
     .doc = "Events to generate before the source finishes; 0 runs until stopped."},
    {.name = "rate", .type = OptionType::Float, .default_value = "0",
     .doc = "Events per second (wall clock); 0 generates as fast as downstream takes them."},
    {.name = "seed", .type = OptionType::Integer, .default_value = "1", .doc = "Random seed."},
    {.name = "users", .type = OptionType::Integer, .default_value = "5", .doc = "Number of simulated users."},
    {.name = "start_time", .type = OptionType::String, .default_value = "now",
     .doc = "Event time of the first event (ISO-8601), or `now`."},
    {.name = "batch_size", .type = OptionType::Integer, .default_value = "1000",
     .doc = "Events per batch when generating as fast as possible."},
};

struct Scope {
  std::string_view name;
  int weight;
};
// Client scopes with a rough real-world mix: frame changes and drawing dominate.
constexpr std::array<Scope, 12> kScopes = {{{"change:frame", 30},   {"draw:object", 18},    {"zoom:image", 10},
                                            {"change:attribute", 8}, {"drag:object", 8},     {"resize:object", 7},
                                            {"click:element", 6},    {"delete:object", 4},   {"save:job", 4},
                                            {"change:label", 3},     {"action:undo", 1},     {"load:job", 1}}};

struct User {
  std::int64_t id;
  std::string name;
  std::string email;
  std::int64_t org_id;  // 0: no organization
  std::string org_slug;
  std::int64_t project_id, task_id, job_id;
  EpochNanos clock;
  std::int64_t frame = 0;
};

class DemoSource final : public Source {
 public:
  static Result<std::unique_ptr<DemoSource>> create(const Options& options) {
    auto self = std::make_unique<DemoSource>();
    self->count_ = options.integer("count");
    self->rate_ = options.number("rate");
    self->batch_size_ = options.integer("batch_size");
    if (self->count_ < 0) return options.error_at("count", "count must be 0 or more");
    if (self->rate_ < 0 || self->rate_ > 1e9) return options.error_at("rate", "rate must be between 0 and 1e9 events/s");
    if (self->batch_size_ < 1) return options.error_at("batch_size", "batch_size must be at least 1");
    std::int64_t users = options.integer("users");
    if (users < 1 || users > 1'000'000) return options.error_at("users", "users must be between 1 and 1000000");
    EpochNanos start = 0;
    if (options.string("start_time") != "now") {
      auto parsed = parse_iso8601(options.string("start_time"));
      if (!parsed.ok()) return options.error_at("start_time", parsed.error().message());
      start = parsed.value();
      self->fixed_start_ = true;
    }
    self->rng_.seed(static_cast<std::uint64_t>(options.integer("seed")));
    for (std::int64_t i = 0; i < users; ++i) {
      User u;
      u.id = 1000 + i;
      u.name = fmt::format("annotator{:02}", i + 1);
      u.email = fmt::format("annotator{:02}@example.org", i + 1);
      u.org_id = (i % 3 == 2) ? 0 : 1 + i % 2;
      u.org_slug = u.org_id == 0 ? "" : fmt::format("org-{}", u.org_id);
      u.clock = start;
      self->users_.push_back(std::move(u));
      self->assign_job(self->users_.back());
    }
    for (const Scope& s : kScopes) self->total_weight_ += s.weight;
    return self;
  }

  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    if (!fixed_start_) {
      for (User& u : users_) u.clock = ctx.clock().now();
    }
    started_at_ = uv_now(ctx.loop());
    int rc = arm(0);
    if (rc != 0) return Error("cannot start timer: " + uv_error_text(rc));
    return {};
  }

  void resume() override {
    paused_ = false;
    arm(0);
  }

  void stop() override { finish(); }

 private:
  int arm(std::uint64_t delay_ms) {
    if (done_ || paused_) return 0;
    return start_timer(timer_, ctx_->loop(), this, [](uv_timer_t* t) { static_cast<DemoSource*>(t->data)->tick(); },
                       delay_ms);
  }

  void tick() {
    std::int64_t due = batch_size_;
    if (rate_ > 0) {
      double elapsed = static_cast<double>(uv_now(ctx_->loop()) - started_at_) / 1000.0;
      due = std::min<std::int64_t>(static_cast<std::int64_t>(elapsed * rate_) - emitted_, 10 * batch_size_);
    }
    if (count_ > 0) due = std::min(due, count_ - emitted_);
    bool room = true;
    if (due > 0) {
      auto batch = EventBatch::create();
      batch->events().reserve(static_cast<std::size_t>(due));
      for (std::int64_t i = 0; i < due; ++i) generate(*batch);
      emitted_ += due;
      room = ctx_->emit(std::move(batch));
    }
    if (count_ > 0 && emitted_ >= count_) return finish();
    if (!room) {
      paused_ = true;
      return;
    }
    arm(rate_ > 0 ? 10 : 0);
  }

  void finish() {
    if (done_) return;
    done_ = true;
    timer_.close();
    if (ctx_) ctx_->finished();
  }

  void assign_job(User& u) {
    std::uniform_int_distribution<int> project(1, 4);
    u.project_id = project(rng_);
    u.task_id = u.project_id * 10 + std::uniform_int_distribution<int>(1, 5)(rng_);
    u.job_id = u.task_id * 10 + std::uniform_int_distribution<int>(1, 8)(rng_);
    u.frame = 0;
  }

  std::string_view pick_scope() {
    int r = std::uniform_int_distribution<int>(0, total_weight_ - 1)(rng_);
    for (const Scope& s : kScopes) {
      if (r < s.weight) return s.name;
      r -= s.weight;
    }
    return kScopes[0].name;
  }

  void generate(EventBatch& batch) {
    Arena& arena = batch.arena();
    User& u = users_[std::uniform_int_distribution<std::size_t>(0, users_.size() - 1)(rng_)];
    // Mostly short gaps between actions, sometimes a pause longer than CVAT's 100 s cutoff.
    double gap_s = std::uniform_real_distribution<double>(0, 1)(rng_) < 0.02
                       ? std::uniform_real_distribution<double>(100, 900)(rng_)
                       : std::exponential_distribution<double>(1.0 / 4.0)(rng_);
    u.clock += static_cast<EpochNanos>(gap_s * 1e3) * 1'000'000;
    if (std::uniform_real_distribution<double>(0, 1)(rng_) < 0.01) assign_job(u);

    std::string_view scope = pick_scope();
    std::int64_t duration = 0;
    std::string payload;
    Value obj_name, obj_id, obj_val;
    if (scope == "change:frame") {
      std::int64_t step = std::uniform_int_distribution<int>(1, 3)(rng_);
      duration = std::uniform_int_distribution<int>(40, 4000)(rng_);
      payload = fmt::format(R"({{"from":{},"to":{},"step":{}}})", u.frame, u.frame + step, step);
      u.frame += step;
    } else if (scope == "draw:object" || scope == "drag:object" || scope == "resize:object" || scope == "delete:object") {
      static constexpr std::string_view shapes[] = {"rectangle", "polygon", "points", "polyline", "ellipse"};
      std::string_view shape = shapes[std::uniform_int_distribution<int>(0, 4)(rng_)];
      obj_name = Value::string_view("shape");
      obj_id = Value::integer(std::uniform_int_distribution<int>(1, 5000)(rng_));
      payload = fmt::format(R"({{"frame":{},"shape":"{}","points":{}}})", u.frame, shape,
                            std::uniform_int_distribution<int>(2, 30)(rng_));
    } else if (scope == "change:attribute" || scope == "change:label") {
      obj_name = Value::string_view(scope == "change:label" ? "label" : "occluded");
      obj_val = Value::string_view(std::uniform_int_distribution<int>(0, 1)(rng_) ? "true" : "false");
      payload = fmt::format(R"({{"frame":{}}})", u.frame);
    } else if (scope == "zoom:image") {
      payload = fmt::format(R"({{"frame":{},"zoom":{:.2f}}})", u.frame,
                            std::uniform_real_distribution<double>(0.25, 8.0)(rng_));
    } else {
      duration = scope == "save:job" || scope == "load:job" ? std::uniform_int_distribution<int>(100, 2500)(rng_) : 0;
      payload = fmt::format(R"({{"frame":{}}})", u.frame);
    }

    Event& e = batch.add_event(17);
    Value& f = e.fields;
    ByteBuffer ts;
    format_iso8601_ms(u.clock, ts);
    f.append_member(arena, "scope", Value::string_view(scope));
    f.append_member(arena, "obj_name", obj_name);
    f.append_member(arena, "obj_id", obj_id);
    f.append_member(arena, "obj_val", obj_val);
    f.append_member(arena, "source", Value::string_view("client"));
    f.append_member(arena, "timestamp", Value::string(arena, ts.view()));
    f.append_member(arena, "count", Value::integer(1));
    f.append_member(arena, "duration", Value::integer(duration));
    f.append_member(arena, "project_id", Value::integer(u.project_id));
    f.append_member(arena, "task_id", Value::integer(u.task_id));
    f.append_member(arena, "job_id", Value::integer(u.job_id));
    f.append_member(arena, "user_id", Value::integer(u.id));
    f.append_member(arena, "user_name", Value::string(arena, u.name));
    f.append_member(arena, "user_email", Value::string(arena, u.email));
    f.append_member(arena, "org_id", u.org_id ? Value::integer(u.org_id) : Value::null());
    f.append_member(arena, "org_slug", u.org_id ? Value::string(arena, u.org_slug) : Value::null());
    f.append_member(arena, "payload", Value::string(arena, payload));
    batch.add_byte_size(360);  // about what one such event is as JSON
  }

  SourceContext* ctx_ = nullptr;
  UvTimer timer_;
  std::mt19937_64 rng_;
  std::vector<User> users_;
  int total_weight_ = 0;
  std::int64_t count_ = 0;
  double rate_ = 0;
  std::int64_t batch_size_ = 1000;
  std::int64_t emitted_ = 0;
  std::uint64_t started_at_ = 0;
  bool fixed_start_ = false;
  bool paused_ = false;
  bool done_ = false;
};

}  // namespace

WEIR_REGISTER_SOURCE("demo", "Generates CVAT-like user-activity events (seeded, in event time)", kSchema,
                     DemoSource::create);

}  // namespace weir::plugins
