#include "weir/registry.hpp"

#include <algorithm>

namespace weir {

std::string_view component_kind_name(ComponentKind kind) {
  switch (kind) {
    case ComponentKind::Source: return "source";
    case ComponentKind::Transform: return "transform";
    case ComponentKind::Sink: return "sink";
    case ComponentKind::Api: return "api";
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
  static const OptionSpec max_events = {
      .name = "buffer.max_events", .type = OptionType::Integer, .default_value = "4096",
      .doc = "Events the input buffer holds in memory before `when_full` applies (disk: events not yet durable, "
             "and read-ahead kept in memory)."};
  // A transform's input holds less: it is taken within a turn of the loop, and every event
  // held costs its arena (~1 KiB a CVAT event). The CVAT pipeline into ClickHouse peaked at
  // 116 MiB with 4096 on every input and at 85-91 MiB with 1024 on its three transforms', at
  // the same rate; a sink keeps 4096 (a disk buffer's window at 1024 took 30% off its rate).
  static const OptionSpec transform_max_events = {
      .name = "buffer.max_events", .type = OptionType::Integer, .default_value = "1024",
      .doc = "Events the input buffer holds in memory before upstream waits."};
  static const OptionSpec max_bytes = {
      .name = "buffer.max_bytes", .type = OptionType::Bytes, .default_value = "64MiB",
      .doc = "Bytes the input buffer's events may take in memory (their arenas, about 2-4x their JSON size) "
             "before `when_full` applies (disk: events not yet durable, and read-ahead kept in memory)."};
  static const OptionSchema transform = {type, inputs, transform_max_events, max_bytes};
  static const OptionSchema api = {
      type,
      {.name = "address", .type = OptionType::String,
       .doc = "Serve it on a server of its own at host:port; without it, on weir's API server (`api:`), under its "
              "paths."},
  };
  static const OptionSchema sink = {
      type,
      inputs,
      {.name = "buffer.type", .type = OptionType::Enum, .default_value = "memory", .choices = {"memory", "disk"},
       .doc = "`memory`: lost on a crash or kill. `disk`: records in <data_dir>/buffers/<sink>/, each with a CRC-32C; "
              "a batch counts as delivered for its source (HTTP 200, file checkpoint) once its record is durable, "
              "and survives kill -9 and restarts."},
      max_events,
      max_bytes,
      {.name = "buffer.max_size", .type = OptionType::Bytes, .default_value = "1GiB",
       .doc = "Disk: the most the buffer's segment files may take; past it `when_full` applies."},
      {.name = "buffer.sync", .type = OptionType::Enum, .default_value = "always", .choices = {"always", "os"},
       .doc = "Disk: `always` fdatasyncs every group of records before acknowledging them (batches written "
              "meanwhile share one sync); `os` acknowledges after write(2): survives kill -9, but a machine crash or "
              "power loss can lose what the OS had not written back (a loss window of up to "
              "vm.dirty_expire_centisecs, 30 s by default)."},
      {.name = "buffer.when_full", .type = OptionType::Enum, .default_value = "block",
       .choices = {"block", "drop_newest"},
       .doc = "`block` pauses upstream (backpressure; HTTP sources answer 503); `drop_newest` discards new batches, "
              "counted as dropped, and their sources see them as not delivered."},
  };
  switch (kind) {
    case ComponentKind::Source: return source;
    case ComponentKind::Transform: return transform;
    case ComponentKind::Sink: return sink;
    case ComponentKind::Api: return api;
  }
  return source;
}

}  // namespace weir
