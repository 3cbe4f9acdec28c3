// `filter` transform: keeps the events that match `condition` (see weir/condition.hpp);
// the others are dropped on purpose and counted.
#include "weir/condition.hpp"
#include "weir/registry.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "condition", .type = OptionType::String, .required = true,
     .doc = "Events for which this is true pass, e.g. `.source == \"client\" and exists(.user_id)`."},
};

class Filter final : public Transform {
 public:
  static Result<std::unique_ptr<Filter>> create(const Options& o) {
    auto condition = Condition::compile(o.string("condition"));
    if (!condition.ok()) return o.error_at("condition", "condition: " + condition.error().message());
    return std::make_unique<Filter>(std::move(condition.value()));
  }
  explicit Filter(Condition condition) : condition_(std::move(condition)) {}

  void process(BatchPtr batch, TransformContext& ctx) override {
    std::vector<Event>& events = batch->events();
    std::size_t kept = 0;
    for (Event& e : events) {
      if (condition_.matches(e)) events[kept++] = e;
    }
    ctx.metrics().events_dropped.add(events.size() - kept);
    events.resize(kept);
    ctx.emit(std::move(batch));
  }

 private:
  Condition condition_;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("filter", "Keeps the events that match a condition", kSchema, Filter::create);

}  // namespace weir::plugins
