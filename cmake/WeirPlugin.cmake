# weir_add_plugin(name source...): a weir transform plugin, `name.so`, from C or C++
# sources (C++ ones use weir/sdk.hpp and build as C++20). Only its entry symbol is
# exported, and it must not need anything of weir's at link time (--no-undefined), so it
# loads into any weir of the same ABI major. The source dir is recorded in the plugin, so
# that a weir that refuses it can say how to rebuild it.
function(weir_add_plugin name)
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE weir::sdk)
  set_target_properties(${name} PROPERTIES
    PREFIX ""
    CXX_STANDARD 20
    CXX_STANDARD_REQUIRED ON
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  target_compile_definitions(${name} PRIVATE WEIR_PLUGIN_SOURCE_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
  target_link_options(${name} PRIVATE -Wl,--no-undefined)
endfunction()
