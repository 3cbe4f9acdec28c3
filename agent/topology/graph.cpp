#include "topology/graph.hpp"

#include <algorithm>
#include <functional>
#include <map>

#include <fmt/format.h>

#include "weir/http.hpp"

namespace weir::topology {

namespace {

std::string port_name(const Graph& graph, const Port& port) {
  const std::string& output = graph.nodes[port.node].outputs[port.output];
  return output.empty() ? graph.name(port.node) : graph.name(port.node) + "." + output;
}

void check_cycles(const Graph& graph, config::Diagnostics& diagnostics) {
  enum class Mark { New, Active, Done };
  std::vector<Mark> marks(graph.nodes.size(), Mark::New);
  std::vector<std::size_t> path;
  std::function<bool(std::size_t)> visit = [&](std::size_t n) -> bool {
    marks[n] = Mark::Active;
    path.push_back(n);
    for (const Port& in : graph.nodes[n].inputs) {
      if (marks[in.node] == Mark::Active) {
        // Report the loop in data-flow order: upstream first.
        auto start = std::find(path.begin(), path.end(), in.node);
        std::string text;
        std::vector<std::size_t> members(start, path.end());
        std::reverse(members.begin(), members.end());
        for (std::size_t m : members) text += graph.name(m) + " -> ";
        text += graph.name(members.front());
        const auto& where = graph.component(graph.nodes[n]).where;
        diagnostics.errors.emplace_back(fmt::format("cycle in the pipeline: {}", text), where);
        return true;
      }
      if (marks[in.node] == Mark::New && visit(in.node)) return true;
    }
    path.pop_back();
    marks[n] = Mark::Done;
    return false;
  };
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    if (marks[n] == Mark::New && visit(n)) return;
  }
}

void check_reaches_sink(const Graph& graph, config::Diagnostics& diagnostics) {
  std::vector<bool> reaches(graph.nodes.size(), false);
  std::function<void(std::size_t)> mark = [&](std::size_t n) {
    if (reaches[n]) return;
    reaches[n] = true;
    for (const Port& in : graph.nodes[n].inputs) mark(in.node);
  };
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    if (graph.nodes[n].kind == ComponentKind::Sink) mark(n);
  }
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    if (reaches[n]) continue;
    const auto& c = graph.component(graph.nodes[n]);
    diagnostics.warnings.emplace_back(
        fmt::format("{} '{}' has no path to any sink: its events will be discarded", component_kind_name(c.kind), c.name),
        c.where);
  }
}

}  // namespace

Graph build(config::PipelineConfig config, config::Diagnostics& diagnostics) {
  Graph graph;
  graph.config = std::move(config);
  std::map<std::string, std::size_t> by_name;

  for (std::size_t i = 0; i < graph.config.components.size(); ++i) {
    const config::ComponentConfig& c = graph.config.components[i];
    Node node;
    node.config_index = i;
    node.kind = c.kind;
    auto report = [&](const Error& e) {
      Error located = e;
      located.at(c.where);
      diagnostics.errors.push_back(std::move(located));
    };
    switch (c.kind) {
      case ComponentKind::Source: {
        auto made = c.descriptor->make_source(c.options);
        if (made.ok()) {
          node.source = std::move(made.value());
          node.outputs = node.source->outputs();
        } else {
          report(made.error());
        }
        break;
      }
      case ComponentKind::Transform: {
        auto made = c.descriptor->make_transform(c.options);
        if (made.ok()) {
          node.transform = std::move(made.value());
          node.outputs = node.transform->outputs();
        } else {
          report(made.error());
        }
        break;
      }
      case ComponentKind::Sink: {
        auto made = c.descriptor->make_sink(c.options);
        if (made.ok()) node.sink = std::move(made.value());
        else report(made.error());
        node.outputs.clear();
        break;
      }
      case ComponentKind::Api: break;  // not in config.components
    }
    node.outputs.push_back(std::string(kDeadLetterOutput));  // every component's rejects, routable
    by_name[c.name] = graph.nodes.size();
    graph.nodes.push_back(std::move(node));
  }

  // APIs stand beside the graph; two may not claim the same path on weir's API server.
  std::map<std::string, std::string> claimed;  // path prefix -> api
  for (const config::ComponentConfig& c : graph.config.apis) {
    auto made = c.descriptor->make_api(c.options);
    if (!made.ok()) {
      Error located = made.error();
      located.at(c.where);
      diagnostics.errors.push_back(std::move(located));
      graph.apis.push_back(nullptr);
      continue;
    }
    if (!c.options.has("address")) {
      for (const std::string& path : made.value()->paths()) {
        for (const char* own : {"/health", "/metrics", "/graph", "/reload", "/tap"}) {
          if (path.starts_with(own) || std::string_view(own).starts_with(path)) {
            diagnostics.errors.emplace_back(fmt::format("api '{}' claims {}, which is weir's own", c.name, path), c.where);
          }
        }
        for (const auto& [taken, other] : claimed) {
          bool overlap = http::path_is_under(path, taken) || http::path_is_under(taken, path);
          if (overlap && other != c.name) {
            diagnostics.errors.emplace_back(fmt::format("api '{}' claims {}, and api '{}' claims {}: give one its own "
                                                        "address",
                                                        c.name, path, other, taken),
                                            c.where);
          }
        }
        claimed.emplace(path, c.name);
      }
    }
    graph.apis.push_back(std::move(made.value()));
  }

  std::vector<std::string> producers;
  for (const auto& c : graph.config.components) {
    if (c.kind != ComponentKind::Sink) producers.push_back(c.name);
  }

  for (Node& node : graph.nodes) {
    const config::ComponentConfig& c = graph.component(node);
    std::string what = fmt::format("{} '{}'", component_kind_name(c.kind), c.name);
    for (const config::InputRef& input : c.inputs) {
      std::string name = input.text;
      std::string output;
      auto found = by_name.find(name);
      if (found == by_name.end()) {
        if (auto dot = name.find('.'); dot != std::string::npos) {
          output = name.substr(dot + 1);
          name = name.substr(0, dot);
          found = by_name.find(name);
        }
      }
      if (found == by_name.end()) {
        std::string hint = config::nearest(input.text, producers);
        diagnostics.errors.emplace_back(fmt::format("unknown input '{}' in {}{}", input.text, what,
                                                    hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint)),
                                        input.where);
        continue;
      }
      const Node& from = graph.nodes[found->second];
      if (from.kind == ComponentKind::Sink && output != kDeadLetterOutput) {
        diagnostics.errors.emplace_back(
            fmt::format("input '{}' of {} is a sink; only sources and transforms produce events (a sink's "
                        "rejects are '{}.{}')", input.text, what, name, kDeadLetterOutput),
            input.where);
        continue;
      }
      auto port = std::find(from.outputs.begin(), from.outputs.end(), output);
      if (port == from.outputs.end()) {
        std::vector<std::string> named;
        for (const auto& o : from.outputs) {
          if (!o.empty() && o != kDeadLetterOutput) named.push_back(o);  // every component has that one
        }
        std::string listing;
        for (const auto& o : named) listing += (listing.empty() ? "" : ", ") + name + "." + o;
        diagnostics.errors.emplace_back(
            fmt::format("'{}' has no output '{}' (input of {}); {}", name, output, what,
                        named.empty() ? "it has only its default output, referenced as '" + name + "'"
                                      : "its outputs are " + listing),
            input.where);
        continue;
      }
      node.inputs.push_back(Port{found->second, static_cast<std::size_t>(port - from.outputs.begin())});
    }
  }

  if (diagnostics.ok()) {
    check_cycles(graph, diagnostics);
    if (diagnostics.ok()) check_reaches_sink(graph, diagnostics);
  }
  return graph;
}

std::string to_dot(const Graph& graph) {
  std::string out = "digraph weir {\n  rankdir=LR;\n";
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    const auto& c = graph.component(graph.nodes[n]);
    std::string_view shape = c.kind == ComponentKind::Source ? "trapezium" : c.kind == ComponentKind::Sink ? "invtrapezium" : "box";
    out += fmt::format("  \"{}\" [shape={}, label=\"{}\\n({} {})\"];\n", c.name, shape, c.name,
                       component_kind_name(c.kind), c.type);
  }
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    for (const Port& in : graph.nodes[n].inputs) {
      const std::string& output = graph.nodes[in.node].outputs[in.output];
      out += fmt::format("  \"{}\" -> \"{}\"{};\n", graph.name(in.node), graph.name(n),
                         output.empty() ? "" : fmt::format(" [label=\"{}\"]", output));
    }
  }
  out += "}\n";
  return out;
}

std::string summary(const Graph& graph) {
  std::size_t counts[3] = {0, 0, 0};
  std::size_t edges = 0;
  for (const Node& node : graph.nodes) {
    ++counts[static_cast<int>(node.kind)];
    edges += node.inputs.size();
  }
  std::string out = fmt::format("{} source(s), {} transform(s), {} sink(s), {} edge(s)\n", counts[0], counts[1],
                                counts[2], edges);
  for (std::size_t n = 0; n < graph.nodes.size(); ++n) {
    const auto& c = graph.component(graph.nodes[n]);
    std::string inputs;
    for (const Port& in : graph.nodes[n].inputs) inputs += (inputs.empty() ? "" : ", ") + port_name(graph, in);
    out += fmt::format("  {:<9} {:<20} {:<14}{}\n", component_kind_name(c.kind), c.name, c.type,
                       inputs.empty() ? "" : " <- " + inputs);
  }
  for (const config::ComponentConfig& c : graph.config.apis) {
    out += fmt::format("  {:<9} {:<20} {:<14} on {}\n", "api", c.name, c.type,
                       c.options.has("address") ? std::string(c.options.string("address")) : "the API server");
  }
  return out;
}

}  // namespace weir::topology
