// A plugin's transform type seen as a built-in Transform: the engine calls this adapter,
// the adapter calls the plugin through its descriptor.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "weir/component.hpp"
#include "weir/options.hpp"
#include "weir/plugin.h"

namespace weir::plugin {

// One transform type of a loaded plugin: the plugin's struct copied into one of this
// weir's size (fields the plugin's build did not have read as zero).
struct PluginTransformType {
  weir_transform_type callbacks{};
  std::vector<std::string> outputs;  // beyond the default one
  std::string plugin;                // "name version" for messages
};

Result<std::unique_ptr<Transform>> make_plugin_transform(std::shared_ptr<const PluginTransformType> type,
                                                          const Options& options);

}  // namespace weir::plugin
