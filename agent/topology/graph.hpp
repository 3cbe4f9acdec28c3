// The component graph: instantiated components and their edges, checked for unknown
// inputs, cycles and components that reach no sink. Building it starts nothing.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "weir/component.hpp"

namespace weir::topology {

struct Port {
  std::size_t node = 0;
  std::size_t output = 0;  // index into that node's outputs
};

// Every component's last output: its dead letters, as events, for a sink that reads
// `NAME.dead_letter`; without one they go to the dead-letter file.
inline constexpr std::string_view kDeadLetterOutput = "dead_letter";

struct Node {
  std::size_t config_index = 0;  // into Graph::config.components
  ComponentKind kind = ComponentKind::Source;
  std::unique_ptr<Source> source;
  std::unique_ptr<Transform> transform;
  std::unique_ptr<Sink> sink;
  std::vector<std::string> outputs{""};  // "" is the default output
  std::vector<Port> inputs;
};

struct Graph {
  config::PipelineConfig config;
  std::vector<Node> nodes;
  std::vector<std::unique_ptr<Api>> apis;  // config.apis[i]'s, beside the graph

  const config::ComponentConfig& component(const Node& node) const { return config.components[node.config_index]; }
  const std::string& name(std::size_t node) const { return component(nodes[node]).name; }
};

// Instantiates every component through its factory and wires `inputs`. Errors and
// warnings go to `diagnostics`; the graph is usable only when diagnostics.ok().
Graph build(config::PipelineConfig config, config::Diagnostics& diagnostics);

std::string to_dot(const Graph& graph);
std::string summary(const Graph& graph);  // for `weir validate`

}  // namespace weir::topology
