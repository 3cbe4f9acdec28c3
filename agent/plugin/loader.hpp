// Loading transform plugins (weir/plugin.h): shared libraries opened with
// dlopen(RTLD_NOW | RTLD_LOCAL), checked, and registered in the registry next to the
// built-ins, so the rest of weir (validate, list, graph, test, run, reload) cannot tell
// them apart. Every refusal happens here, before anything starts, and names the file.
#pragma once

#include <string>
#include <vector>

#include "weir/plugin.h"
#include "weir/result.hpp"

namespace weir::plugin {

// Checks a descriptor and registers its transform types. `file` is the library it came
// from, empty for a transform built into weir on the SDK (listed as built in).
Status register_plugin(const weir_plugin* descriptor, const std::string& file);

// Whether this weir can load a plugin with descriptor `d` (from `file`): the ABI major equal,
// the minor not newer; the refusal names the file, both versions and how to rebuild it.
Status check_abi(const weir_plugin* d, const std::string& file);

// Loads one library. Loading the same file again (by its real path) does nothing.
Status load_file(const std::string& path);
// Loads every *.so in `dir`, in name order.
Status load_dir(const std::string& dir);

struct LoadedPlugin {
  std::string file;  // real path
  std::string name;
  std::string version;
  std::vector<std::string> types;
};
std::vector<LoadedPlugin> loaded();

}  // namespace weir::plugin
