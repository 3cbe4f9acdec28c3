// The registry is the plugin API: every component type, built-in or loaded, registers a
// `type` name, a one-line summary, its options schema and a factory.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "weir/component.hpp"
#include "weir/options.hpp"
#include "weir/result.hpp"

struct weir_plugin;

namespace weir {

struct ComponentType {
  ComponentKind kind = ComponentKind::Source;
  std::string type;
  std::string summary;
  OptionSchema options;
  // Where the type comes from: empty for built-ins; for a loaded plugin, its name, version
  // and file (`weir list` shows it).
  std::string origin;
  std::function<Result<std::unique_ptr<Source>>(const Options&)> make_source;
  std::function<Result<std::unique_ptr<Transform>>(const Options&)> make_transform;
  std::function<Result<std::unique_ptr<Sink>>(const Options&)> make_sink;
  std::function<Result<std::unique_ptr<Api>>(const Options&)> make_api;
};

class Registry {
 public:
  static Registry& global();

  // Returns false (and keeps the first) when the kind/type pair is already registered.
  bool add(ComponentType type);
  const ComponentType* find(ComponentKind kind, std::string_view type) const;
  std::vector<const ComponentType*> all() const;  // sorted by kind, then type
  std::vector<std::string> type_names(ComponentKind kind) const;

 private:
  std::vector<std::unique_ptr<ComponentType>> types_;
};

// Registers the transform types of a plugin descriptor built into weir (a built-in written
// on the plugin SDK, weir/sdk.hpp), through the checks a loaded plugin passes; a refusal is
// a bug in weir: reported, then abort(). See WEIR_REGISTER_SDK_TRANSFORMS below.
bool register_builtin_plugin(const weir_plugin* descriptor);

// Options every component of a kind accepts besides its own (type, inputs, buffer...).
const OptionSchema& common_options(ComponentKind kind);

namespace detail {
template <typename T>
Result<std::unique_ptr<T>> upcast(auto made) {
  if (!made.ok()) return made.error();
  return std::unique_ptr<T>(std::move(made.value()));
}
}  // namespace detail

// One-line registration from a plugin's .cpp:
//   WEIR_REGISTER_SINK("blackhole", "Counts events and discards them", schema, BlackholeSink::create);
// where create is `Result<std::unique_ptr<BlackholeSink>>(const Options&)`.
template <typename Interface>
bool register_component(std::string type, std::string summary, OptionSchema options,
                        std::function<Result<std::unique_ptr<Interface>>(const Options&)> make) {
  ComponentType t;
  t.type = std::move(type);
  t.summary = std::move(summary);
  t.options = std::move(options);
  if constexpr (std::is_same_v<Interface, Source>) {
    t.kind = ComponentKind::Source;
    t.make_source = std::move(make);
  } else if constexpr (std::is_same_v<Interface, Transform>) {
    t.kind = ComponentKind::Transform;
    t.make_transform = std::move(make);
  } else if constexpr (std::is_same_v<Interface, Sink>) {
    t.kind = ComponentKind::Sink;
    t.make_sink = std::move(make);
  } else {
    static_assert(std::is_same_v<Interface, Api>, "components are sources, transforms, sinks or apis");
    t.kind = ComponentKind::Api;
    t.make_api = std::move(make);
  }
  return Registry::global().add(std::move(t));
}

}  // namespace weir

#define WEIR_CONCAT_INNER(a, b) a##b
#define WEIR_CONCAT(a, b) WEIR_CONCAT_INNER(a, b)
#define WEIR_REGISTER_COMPONENT(interface, type, summary, schema, factory)                   \
  [[maybe_unused]] static const bool WEIR_CONCAT(weir_registered_, __LINE__) =               \
      ::weir::register_component<::weir::interface>(type, summary, schema, [](const ::weir::Options& o) { \
        return ::weir::detail::upcast<::weir::interface>(factory(o));                         \
      })
#define WEIR_REGISTER_SOURCE(type, summary, schema, factory) \
  WEIR_REGISTER_COMPONENT(Source, type, summary, schema, factory)
#define WEIR_REGISTER_TRANSFORM(type, summary, schema, factory) \
  WEIR_REGISTER_COMPONENT(Transform, type, summary, schema, factory)
#define WEIR_REGISTER_SINK(type, summary, schema, factory) WEIR_REGISTER_COMPONENT(Sink, type, summary, schema, factory)
#define WEIR_REGISTER_API(type, summary, schema, factory) WEIR_REGISTER_COMPONENT(Api, type, summary, schema, factory)
// A built-in written on the SDK alone, registered as a plugin would be (after including
// weir/sdk.hpp): WEIR_REGISTER_SDK_TRANSFORMS(RequestId);
#define WEIR_REGISTER_SDK_TRANSFORMS(...)                                         \
  [[maybe_unused]] static const bool WEIR_CONCAT(weir_registered_, __LINE__) =     \
      ::weir::register_builtin_plugin(::weir::sdk::describe<__VA_ARGS__>("weir", WEIR_VERSION, nullptr))
