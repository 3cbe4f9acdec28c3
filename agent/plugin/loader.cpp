#include "plugin/loader.hpp"

#include <dlfcn.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "plugin/host.hpp"
#include "plugin/transform_adapter.hpp"
#include "weir/registry.hpp"

#ifndef WEIR_VERSION
#define WEIR_VERSION "0.0.0"
#endif
#ifndef WEIR_INSTALL_PREFIX
#define WEIR_INSTALL_PREFIX "/usr/local"
#endif

namespace weir::plugin {
namespace {

std::vector<LoadedPlugin>& loaded_plugins() {
  static std::vector<LoadedPlugin> plugins;
  return plugins;
}

std::string text(const char* s) { return s == nullptr ? std::string() : std::string(s); }

// The frozen head of weir_plugin: what every major can read.
constexpr std::size_t kFrozenHead = offsetof(weir_plugin, source_dir) + sizeof(const char*);
// What this major needs of a descriptor.
constexpr std::size_t kMajorHead = offsetof(weir_plugin, init) + sizeof(weir_plugin::init);

// Where this weir's SDK is: the prefix weir runs from when the SDK is installed beside it
// (bin/weir next to lib/cmake/weir), else the prefix it was configured with.
std::string sdk_prefix() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto prefix = exe.parent_path().parent_path();
    if (std::filesystem::exists(prefix / "lib" / "cmake" / "weir" / "weirConfig.cmake", ec)) return prefix.string();
  }
  return WEIR_INSTALL_PREFIX;
}

std::string rebuild_hint(const weir_plugin* d) {
  std::string source = d->source_dir != nullptr && *d->source_dir ? d->source_dir : "<the plugin's source dir>";
  return fmt::format("rebuild it against this weir's SDK: cmake -S {0} -B {0}/build -DCMAKE_PREFIX_PATH={1} && "
                     "cmake --build {0}/build",
                     source, sdk_prefix());
}

// The plugin's struct copied into one of this weir's size, the rest zero (OBS's rule).
template <typename T>
T widened(const void* from, std::size_t their_size) {
  T out{};
  std::memcpy(&out, from, std::min(their_size, sizeof(T)));
  return out;
}

std::optional<OptionType> option_type(std::int32_t type) {
  if (type < WEIR_OPTION_STRING || type > WEIR_OPTION_ANY) return std::nullopt;
  return static_cast<OptionType>(type);  // the two enums share their order (checked below)
}
static_assert(static_cast<int>(OptionType::Any) == WEIR_OPTION_ANY && static_cast<int>(OptionType::Enum) == WEIR_OPTION_ENUM);
static_assert(static_cast<int>(Kind::Object) == WEIR_OBJECT && static_cast<int>(Kind::String) == WEIR_STRING);

bool valid_type_name(std::string_view name) {
  if (name.empty() || !(name.front() >= 'a' && name.front() <= 'z')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

}  // namespace

Status register_plugin(const weir_plugin* d, const std::string& file) {
  std::string who = file.empty() ? fmt::format("built-in plugin {}", text(d->name)) : fmt::format("plugin {}", file);
  if (d->size < kMajorHead) {
    return Error(fmt::format("{}: its descriptor is {} bytes, shorter than ABI {} allows ({}): {}", who, d->size,
                             WEIR_ABI_MAJOR, kMajorHead, rebuild_hint(d)));
  }
  weir_plugin plugin = widened<weir_plugin>(d, d->size);
  if (plugin.transform_count > 0 && (plugin.transforms == nullptr || plugin.transform_type_size < offsetof(weir_transform_type, restore) + sizeof(void*))) {
    return Error(fmt::format("{}: its transform types are malformed (size {}): {}", who, plugin.transform_type_size, rebuild_hint(d)));
  }
  const std::string label = fmt::format("{} {}", text(plugin.name), text(plugin.version));

  // Everything is checked before anything is registered: a plugin loads whole or not at all.
  std::vector<ComponentType> types;
  std::vector<std::shared_ptr<PluginTransformType>> infos;
  const auto& common = common_options(ComponentKind::Transform);
  for (std::size_t i = 0; i < plugin.transform_count; ++i) {
    const auto* raw = reinterpret_cast<const char*>(plugin.transforms) + i * plugin.transform_type_size;
    auto info = std::make_shared<PluginTransformType>();
    info->callbacks = widened<weir_transform_type>(raw, plugin.transform_type_size);
    info->plugin = label;
    const weir_transform_type& t = info->callbacks;
    std::string type = text(t.type);
    auto bad = [&](std::string why) { return Error(fmt::format("{}: transform type '{}': {}", who, type, why)); };
    if (!valid_type_name(type)) return bad("the type name must be [a-z][a-z0-9_]*");
    if (t.create == nullptr || t.destroy == nullptr || t.process == nullptr) return bad("create, destroy and process are required");
    if (t.keeps_state != 0 && (t.snapshot == nullptr || t.restore == nullptr)) return bad("keeps_state needs snapshot and restore");
    if (const ComponentType* taken = Registry::global().find(ComponentKind::Transform, type)) {
      return bad(taken->origin.empty() ? "a built-in transform has that type" : fmt::format("already registered by {}", taken->origin));
    }
    for (const auto& other : types) {
      if (other.type == type) return bad("declared twice");
    }
    if (t.outputs != nullptr) {
      for (const char* const* o = t.outputs; *o != nullptr; ++o) {
        if (!valid_type_name(*o) || std::string_view(*o) == "dead_letter") return bad(fmt::format("bad output name '{}'", *o));
        info->outputs.emplace_back(*o);
      }
    }
    ComponentType ct;
    ct.kind = ComponentKind::Transform;
    ct.type = type;
    ct.summary = text(t.summary);
    ct.origin = file.empty() ? std::string() : fmt::format("plugin {} ({})", label, file);
    if (t.option_count > 0 && (t.options == nullptr || plugin.option_size < offsetof(weir_option, doc) + sizeof(const char*))) {
      return bad(fmt::format("its options are malformed (size {})", plugin.option_size));
    }
    for (std::size_t j = 0; j < t.option_count; ++j) {
      weir_option o = widened<weir_option>(reinterpret_cast<const char*>(t.options) + j * plugin.option_size, plugin.option_size);
      OptionSpec spec;
      spec.name = text(o.name);
      auto kind = option_type(o.type);
      if (spec.name.empty() || !kind) return bad(fmt::format("option {} has no name or an unknown type ({})", j, o.type));
      bool weirs_own = spec.name.rfind("buffer.", 0) == 0;
      for (const auto& c : common) weirs_own = weirs_own || c.name == spec.name;
      if (weirs_own) return bad(fmt::format("option '{}' is weir's own", spec.name));
      spec.type = *kind;
      spec.required = o.required != 0;
      spec.default_value = text(o.default_value);
      spec.doc = text(o.doc);
      if (o.choices != nullptr) {
        for (const char* const* c = o.choices; *c != nullptr; ++c) spec.choices.emplace_back(*c);
      }
      if (spec.type == OptionType::Enum && spec.choices.empty()) return bad(fmt::format("enum option '{}' has no choices", spec.name));
      if (spec.type == OptionType::Enum && !spec.default_value.empty() &&
          std::find(spec.choices.begin(), spec.choices.end(), spec.default_value) == spec.choices.end()) {
        return bad(fmt::format("option '{}' defaults to '{}', not one of its choices", spec.name, spec.default_value));
      }
      ct.options.push_back(std::move(spec));
    }
    std::shared_ptr<const PluginTransformType> shared = info;
    ct.make_transform = [shared](const Options& options) { return make_plugin_transform(shared, options); };
    types.push_back(std::move(ct));
    infos.push_back(std::move(info));
  }
  if (plugin.init != nullptr) {
    weir_error error;
    if (plugin.init(&host_table(), &error) != WEIR_OK) {
      return Error(fmt::format("{}: failed to initialise: {}", who,
                               error.error.has_value() ? error.error->message() : std::string("no reason given")));
    }
  }
  LoadedPlugin record{file, text(plugin.name), text(plugin.version), {}};
  for (auto& ct : types) {
    record.types.push_back(ct.type);
    Registry::global().add(std::move(ct));
  }
  if (!file.empty()) loaded_plugins().push_back(std::move(record));
  return {};
}

Status check_abi(const weir_plugin* d, const std::string& file) {
  if (d->size < kFrozenHead) return Error(fmt::format("plugin {}: its descriptor is {} bytes, too short to be one", file, d->size));
  if (d->abi_major != WEIR_ABI_MAJOR) {
    return Error(fmt::format("plugin {} ({} {}) was built for weir plugin ABI {}.{}, but this weir ({}) has ABI {}.{}; {}", file,
                             text(d->name), text(d->version), d->abi_major, d->abi_minor, WEIR_VERSION, WEIR_ABI_MAJOR,
                             WEIR_ABI_MINOR, rebuild_hint(d)));
  }
  if (d->abi_minor > WEIR_ABI_MINOR) {
    return Error(fmt::format("plugin {} ({} {}) needs weir plugin ABI {}.{}, newer than this weir's ({}, ABI {}.{}): "
                             "upgrade weir, or {}",
                             file, text(d->name), text(d->version), d->abi_major, d->abi_minor, WEIR_VERSION, WEIR_ABI_MAJOR,
                             WEIR_ABI_MINOR, rebuild_hint(d)));
  }
  return {};
}

Status load_file(const std::string& path) {
  std::error_code ec;
  std::filesystem::path real = std::filesystem::canonical(path, ec);
  if (ec) return Error(fmt::format("plugin {}: {}", path, ec.message()));
  for (const LoadedPlugin& p : loaded_plugins()) {
    if (p.file == real.string()) return {};
  }
  void* handle = dlopen(real.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return Error(fmt::format("plugin {}: cannot load it: {}", path, dlerror()));
  auto close = [&](Error e) {
    dlclose(handle);
    return e;
  };
  auto entry = reinterpret_cast<weir_plugin_entry_fn>(dlsym(handle, WEIR_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    return close(Error(fmt::format("plugin {}: it exports no {} symbol, so it is not a weir plugin (build it with "
                                   "weir_add_plugin from find_package(weir))",
                                   real.string(), WEIR_PLUGIN_ENTRY_SYMBOL)));
  }
  const weir_plugin* d = entry();
  if (d == nullptr) return close(Error(fmt::format("plugin {}: {} returned no descriptor", real.string(), WEIR_PLUGIN_ENTRY_SYMBOL)));
  if (Status compatible = check_abi(d, real.string()); !compatible.ok()) return close(compatible.error());
  // Once registered, the library stays loaded for the life of the process: its types'
  // callbacks and strings live in it.
  if (Status registered = register_plugin(d, real.string()); !registered.ok()) return close(registered.error());
  return {};
}

Status load_dir(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".so") files.push_back(entry.path().string());
  }
  if (ec) return Error(fmt::format("plugins_dir {}: {}", dir, ec.message()));
  std::sort(files.begin(), files.end());
  for (const std::string& file : files) {
    if (Status loaded = load_file(file); !loaded.ok()) return loaded;
  }
  return {};
}

std::vector<LoadedPlugin> loaded() { return loaded_plugins(); }

}  // namespace weir::plugin

namespace weir {

bool register_builtin_plugin(const weir_plugin* descriptor) {
  if (Status registered = plugin::register_plugin(descriptor, ""); !registered.ok()) {
    std::fprintf(stderr, "weir: %s\n", registered.error().message().c_str());
    std::abort();
  }
  return true;
}

}  // namespace weir
