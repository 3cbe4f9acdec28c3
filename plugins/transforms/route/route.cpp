// `route` transform: one named output per condition (`name.output` downstream) and
// `_unmatched` for events no condition took. An event goes to every route it matches;
// each output after the first gets its own copy, so downstream changes stay apart.
#include <fmt/format.h>

#include "weir/condition.hpp"
#include "weir/registry.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "route", .type = OptionType::Map, .required = true,
     .doc = "output name: condition. Events no route matches go to `_unmatched`."},
};

class Route final : public Transform {
 public:
  static Result<std::unique_ptr<Route>> create(const Options& o) {
    auto self = std::make_unique<Route>();
    for (const Member& m : o.find("route")->members()) {
      std::string name(m.key);
      if (name == "_unmatched" || name.empty() || name.find('.') != std::string::npos) {
        return o.error_at("route", fmt::format("'{}' cannot name a route", name));
      }
      if (!m.value.is_string()) return o.error_at("route", fmt::format("route '{}' needs a condition (a string)", name));
      auto condition = Condition::compile(m.value.as_string());
      if (!condition.ok()) return o.error_at("route", fmt::format("route '{}': {}", name, condition.error().message()));
      self->names_.push_back(name);
      self->conditions_.push_back(std::move(condition.value()));
    }
    if (self->names_.empty()) return o.error_at("route", "route needs at least one output");
    return self;
  }

  // No default output: everything leaves through a named one, so `inputs: [route]` alone
  // is a config error that lists the outputs.
  std::vector<std::string> outputs() const override {
    std::vector<std::string> out(names_);
    out.push_back("_unmatched");
    return out;
  }

  void process(BatchPtr batch, TransformContext& ctx) override {
    std::vector<BatchPtr> routed;
    for (std::size_t i = 0; i <= names_.size(); ++i) routed.push_back(batch->derive());
    Arena& arena = batch->arena();
    for (const Event& e : batch->events()) {
      bool placed = false;
      for (std::size_t r = 0; r < conditions_.size(); ++r) {
        if (!conditions_[r].matches(e)) continue;
        routed[r]->events().push_back(placed ? Event{deep_copy(e.fields, arena), deep_copy(e.metadata, arena)} : e);
        placed = true;
      }
      if (!placed) routed.back()->events().push_back(e);
    }
    batch.reset();
    for (std::size_t r = 0; r < routed.size(); ++r) ctx.emit(std::move(routed[r]), r);
  }

 private:
  std::vector<std::string> names_;
  std::vector<Condition> conditions_;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("route", "Sends events to named outputs by condition (`name.output`), the rest to `_unmatched`",
                        kSchema, Route::create);

}  // namespace weir::plugins
