#include "weir/registry.hpp"

#include <algorithm>

namespace weir {

std::string_view component_kind_name(ComponentKind kind) {
  switch (kind) {
    case ComponentKind::Source: return "source";
    case ComponentKind::Transform: return "transform";
    case ComponentKind::Sink: return "sink";
  }
  return "component";
}

Registry& Registry::global() {
  static Registry registry;
  return registry;
}

bool Registry::add(ComponentType type) {
  if (find(type.kind, type.type) != nullptr) return false;
  types_.push_back(std::make_unique<ComponentType>(std::move(type)));
  return true;
}

const ComponentType* Registry::find(ComponentKind kind, std::string_view type) const {
  for (const auto& t : types_) {
    if (t->kind == kind && t->type == type) return t.get();
  }
  return nullptr;
}

std::vector<const ComponentType*> Registry::all() const {
  std::vector<const ComponentType*> out;
  for (const auto& t : types_) out.push_back(t.get());
  std::sort(out.begin(), out.end(), [](const ComponentType* a, const ComponentType* b) {
    if (a->kind != b->kind) return a->kind < b->kind;
    return a->type < b->type;
  });
  return out;
}

std::vector<std::string> Registry::type_names(ComponentKind kind) const {
  std::vector<std::string> out;
  for (const ComponentType* t : all()) {
    if (t->kind == kind) out.push_back(t->type);
  }
  return out;
}

const OptionSchema& common_options(ComponentKind kind) {
  static const OptionSpec type = {.name = "type", .type = OptionType::String, .required = true,
                                  .doc = "The component type."};
  static const OptionSpec inputs = {.name = "inputs", .type = OptionType::StringList, .required = true,
                                    .doc = "Components to read from: `name`, or `name.output` for a named output."};
  static const OptionSchema source = {type};
  static const OptionSchema transform = {
      type,
      inputs,
      {.name = "buffer.max_events", .type = OptionType::Integer, .default_value = "4096",
       .doc = "Events the input buffer holds before upstream is paused."},
  };
  static const OptionSchema sink = {
      type,
      inputs,
      {.name = "buffer.max_events", .type = OptionType::Integer, .default_value = "4096",
       .doc = "Events the input buffer holds before `when_full` applies."},
      {.name = "buffer.when_full", .type = OptionType::Enum, .default_value = "block",
       .choices = {"block", "drop_newest"},
       .doc = "`block` pauses upstream (backpressure); `drop_newest` discards new batches, counted as dropped."},
      {.name = "acknowledgements.enabled", .type = OptionType::Bool, .default_value = "false",
       .doc = "Sources feeding this sink wait for its delivery before they answer or checkpoint."},
  };
  switch (kind) {
    case ComponentKind::Source: return source;
    case ComponentKind::Transform: return transform;
    case ComponentKind::Sink: return sink;
  }
  return source;
}

}  // namespace weir
