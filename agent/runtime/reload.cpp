// Signals and reload.
//
// A reload (SIGHUP, --watch-config, POST /reload) reads and validates the whole config
// again. An invalid one changes nothing: its errors are logged with file:line:col and the
// failure is counted. A valid one is applied as a diff, on the loop, between batches,
// components matched by name:
// - a transform whose options (or type) changed is flushed (it emits what it held) and
//   replaced; its input channel and everything in it stay, so the next batch meets the new
//   one, and a transform of the same type carries on from the old one's state;
// - a sink whose options changed: the new instance is started first (a failure there
//   refuses the reload), then the old one drains what it holds (batches waiting for a
//   timeout are sent now, not waited out) and the new one takes over its input channel,
//   disk buffer included;
// - a source whose options changed is stopped (requests in progress are answered, a file
//   source saves its checkpoints) and the new instance starts once it has finished, from
//   the same checkpoints;
// - added components start before anything else changes (one that cannot refuses the
//   reload), removed ones get nothing more and drain (a removed sink's disk buffer stays on
//   disk for a sink of that name), and every edge is rewired as the new graph has it;
// - everything else keeps running untouched, state and buffers included.
// Refused, with the old pipeline running: a component changing kind under the same name, a
// disk buffer's options (or a memory buffer becoming one), and the global options
// (data_dir, api, dead_letter, shutdown_timeout). Those take a restart.
// Requests that arrive during a reload are coalesced: one more reload runs after it, and
// every caller hears the outcome of the reload that covered its request.
#include <sys/stat.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

#include <fmt/format.h>

#include "runtime/runtime_impl.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"

namespace weir::runtime {

void Runtime::Impl::on_signal(int signum) {
  if (signum == SIGHUP) {
    request_reload("SIGHUP", nullptr);
    return;
  }
  const char* name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (stopping_) {
    log::error("weir", "second {} while draining: exiting now", name);
    abandon(130);
    return;
  }
  log::info("weir", "received {}", name);
  shutdown();
}

std::string ReloadOutcome::to_json() const {
  ByteBuffer out;
  out.append(R"({"status":)");
  write_json_string(status, out);
  out.append(fmt::format(R"(,"generation":{},"rebuilt":[)", generation));
  for (std::size_t i = 0; i < rebuilt.size(); ++i) {
    if (i) out.push_back(',');
    write_json_string(rebuilt[i], out);
  }
  out.append(R"(],"errors":[)");
  for (std::size_t i = 0; i < errors.size(); ++i) {
    if (i) out.push_back(',');
    write_json_string(errors[i], out);
  }
  out.append("]}");
  return std::string(out.view());
}

void Runtime::Impl::request_reload(std::string trigger, ReloadDone done) {
  if (done) reload_waiters_.push_back(std::move(done));
  if (stopping_ || completed_) {
    ReloadOutcome outcome;
    outcome.status = "failed";
    outcome.generation = generation_;
    outcome.errors.push_back("the pipeline is draining");
    finish_reload(std::move(outcome));
    return;
  }
  if (reloading_) {
    log::info("weir", "reload requested ({}) while one runs: it runs again when this one is done", trigger);
    reload_again_ = true;
    return;
  }
  begin_reload(trigger);
}

namespace {

std::string inputs_text(const config::ComponentConfig& c) {
  std::string out;
  for (const auto& in : c.inputs) out += in.text + ",";
  return out;
}

bool buffer_options_differ(const Options& a, const Options& b) {
  for (const char* name : {"buffer.type", "buffer.max_size", "buffer.sync", "buffer.max_events", "buffer.max_bytes"}) {
    if (!a.has(name) || !b.has(name)) continue;
    if (to_json(*a.find(name)) != to_json(*b.find(name))) return true;
  }
  return false;
}

}  // namespace

// What a fresh graph changes, or why it cannot be applied while running.
Result<Runtime::Impl::ReloadPlan> Runtime::Impl::plan_reload(topology::Graph& fresh) {
  const config::PipelineConfig& now = graph_.config;
  const config::PipelineConfig& next = fresh.config;
  std::vector<std::string> refused;
  if (now.data_dir != next.data_dir) refused.push_back("data_dir changed");
  if (now.api_address != next.api_address) refused.push_back("api.address changed");
  if (now.dead_letter_path != next.dead_letter_path) refused.push_back("dead_letter.path changed");
  if (now.shutdown_timeout != next.shutdown_timeout) refused.push_back("shutdown_timeout changed");
  ReloadPlan plan;
  std::vector<bool> matched(fresh.nodes.size(), false);
  for (auto& node : nodes_) {
    if (node->removed) continue;
    const config::ComponentConfig& old_config = *node->config;
    std::size_t j = 0;
    while (j < fresh.nodes.size() && fresh.component(fresh.nodes[j]).name != old_config.name) ++j;
    if (j == fresh.nodes.size()) {
      plan.removed.push_back(node.get());
      plan.edges_changed = true;
      continue;
    }
    matched[j] = true;
    const config::ComponentConfig& new_config = fresh.component(fresh.nodes[j]);
    if (new_config.kind != old_config.kind) {
      refused.push_back(fmt::format("{}: a {} cannot become a {} under the same name", old_config.name,
                                    component_kind_name(old_config.kind), component_kind_name(new_config.kind)));
      continue;
    }
    if (inputs_text(new_config) != inputs_text(old_config) || fresh.nodes[j].outputs != node->outputs) {
      plan.edges_changed = true;
    }
    bool same = new_config.type == old_config.type && new_config.options.fingerprint() == old_config.options.fingerprint();
    if (same) {
      plan.kept.push_back({node.get(), j});
    } else if (node->input && node->input->durable() &&
               (new_config.options.string("buffer.type") != "disk" ||
                buffer_options_differ(new_config.options, old_config.options))) {
      // Its records and ledger belong to the instance that wrote them until a restart.
      refused.push_back(fmt::format("{}: its disk buffer's options changed", old_config.name));
    } else if (!node->input || node->input->durable() || new_config.options.string("buffer.type") != "disk") {
      (node->kind() == ComponentKind::Source ? plan.restarted : plan.replaced).push_back({node.get(), j});
    } else {
      refused.push_back(fmt::format("{}: a memory buffer cannot become a disk buffer while running", old_config.name));
    }
  }
  for (std::size_t j = 0; j < fresh.nodes.size(); ++j) {
    if (matched[j]) continue;
    const config::ComponentConfig& c = fresh.component(fresh.nodes[j]);
    // A name removed earlier in this run: its files (a disk buffer, a state) may still be
    // in use by the removed instance.
    bool reused = std::any_of(nodes_.begin(), nodes_.end(), [&](const auto& n) {
      return n->removed && n->config->name == c.name && ((n->input && n->input->durable()) || !n->drained());
    });
    if (reused) {
      refused.push_back(fmt::format("{} was removed earlier in this run and {}", c.name,
                                    "is still draining or had a disk buffer; add it under another name or restart"));
      continue;
    }
    plan.added.push_back(j);
    plan.edges_changed = true;
  }
  // APIs hold nothing a source waits for: a change to any of them starts them all anew.
  auto apis_text = [](const config::PipelineConfig& c) {
    std::string text;
    for (const auto& api : c.apis) text += api.name + "|" + api.type + "|" + api.options.fingerprint() + "\n";
    return text;
  };
  plan.apis_changed = apis_text(now) != apis_text(next);
  if (!refused.empty()) {
    std::string why;
    for (const auto& r : refused) why += (why.empty() ? "" : "; ") + r;
    return Error(why + " (these take a restart)");
  }
  return plan;
}

// Added components are built and started (sinks first, each with its disk buffer; then
// transforms, with any state they saved before) before the running pipeline is touched,
// so one that cannot start refuses the reload. They get nothing until rewire().
Status Runtime::Impl::start_added(ReloadPlan& plan, topology::Graph& fresh) {
  for (std::size_t j : plan.added) {
    std::size_t index = nodes_.size() + plan.added_nodes.size();
    plan.added_nodes.push_back(make_node(fresh.nodes[j], fresh.component(fresh.nodes[j]), index));
  }
  auto fail = [](Node& node, const Status& status) {
    return Error(fmt::format("{}: the new {} failed to start: {}", node.config->name, component_kind_name(node.kind()),
                             status.error().message()));
  };
  for (auto& node : plan.added_nodes) {
    if (node->kind() != ComponentKind::Transform) continue;
    if (Status loaded = load_transform_state(*node); !loaded.ok()) return fail(*node, loaded);
  }
  for (auto& node : plan.added_nodes) {
    if (node->kind() != ComponentKind::Sink) continue;
    if (Status started = start_sink(*node); !started.ok()) return fail(*node, started);
    node->started = true;
  }
  for (auto& node : plan.added_nodes) {
    if (node->kind() != ComponentKind::Transform) continue;
    if (Status started = start_transform(*node); !started.ok()) return fail(*node, started);
    node->started = true;
  }
  return {};
}

void Runtime::Impl::begin_reload(const std::string& trigger) {
  reloading_ = true;
  log::info("weir", "reloading ({})", trigger);
  ReloadOutcome outcome;
  outcome.generation = generation_;
  auto fail = [&](std::vector<std::string> errors) {
    for (const auto& e : errors) log::error("weir", "reload: {}", e);
    log::error("weir", "reload failed: the running pipeline (generation {}) is unchanged", generation_);
    outcome.status = "failed";
    outcome.errors = std::move(errors);
    finish_reload(std::move(outcome));
  };

  config::Diagnostics diagnostics;
  auto fresh = std::make_unique<topology::Graph>();
  config::PipelineConfig config = config::load(graph_.config.files, diagnostics);
  if (diagnostics.ok()) *fresh = topology::build(std::move(config), diagnostics);
  if (!diagnostics.ok()) {
    std::vector<std::string> errors;
    for (const Error& e : diagnostics.errors) errors.push_back(e.to_string());
    return fail(std::move(errors));
  }
  auto planned = plan_reload(*fresh);
  if (!planned.ok()) return fail({planned.error().message()});
  ReloadPlan& plan = planned.value();
  if (plan.empty()) {
    log::info("weir", "reload: nothing changed (generation {})", generation_);
    outcome.status = "unchanged";
    return finish_reload(std::move(outcome));
  }

  // Everything new starts before anything changes: new sinks of changed ones, added sinks
  // and transforms. A failure refuses the reload and stops what was started.
  std::vector<std::unique_ptr<NodeContext>> sink_contexts;
  for (auto& [node, j] : plan.replaced) {
    if (node->kind() != ComponentKind::Sink) continue;
    auto context = std::make_unique<NodeContext>(*this, *node);
    Status started = fresh->nodes[j].sink->start(*context);
    if (!started.ok()) {
      return fail({fmt::format("{}: the new sink failed to start: {}", node->config->name, started.error().message())});
    }
    sink_contexts.push_back(std::move(context));
  }
  if (Status started = start_added(plan, *fresh); !started.ok()) {
    for (auto& node : plan.added_nodes) {
      if (node->state) node->state->close();
      if (node->partition_states) node->partition_states->close();
      node->input.reset();
    }
    plan.added_nodes.clear();
    return fail({started.error().message()});
  }

  // Components are replaced and edges change on the loop: transforms run there from now on.
  close_chains("reload");

  // From here on the reload is applied. A drain or a source's stop may finish at once,
  // inside the call: the outcome is in place before, and one count held until the end
  // keeps complete_reload() from running before every change is made.
  pending_outcome_ = ReloadOutcome{};
  ++reload_swaps_pending_;
  std::size_t sink_index = 0;
  for (auto& [node, j] : plan.replaced) {
    const config::ComponentConfig* new_config = &fresh->component(fresh->nodes[j]);
    outcome.rebuilt.push_back(node->config->name);
    if (node->kind() == ComponentKind::Transform) {
      bool same_type = new_config->type == node->config->type;
      Retired& retired = retire_instance(*node);
      // What the old instance held goes out on the old edges, before they change.
      if (node->started && !node->finished) retired.transform->flush(*retired.context);
      node->context = std::make_unique<NodeContext>(*this, *node);
      node->graph_node->transform = std::move(fresh->nodes[j].transform);
      node->config = new_config;
      apply_memory_limits(*node);
      Status started = node->graph_node->transform->start(*node->context);
      // The new instance carries on from the old one's state (per-user clocks survive an
      // option change); the held acknowledgements stay with the node's state keeper.
      if (started.ok() && node->state && same_type && retired.transform->keeps_state()) {
        started = node->graph_node->transform->restore(retired.transform->snapshot());
      }
      if (started.ok() && node->partition_states && same_type && retired.transform->partitions_state()) {
        for (const std::string& partition : node->partition_states->partitions()) {
          std::optional<std::string> state = retired.transform->snapshot_partition(partition);
          if (state) started = node->graph_node->transform->restore_partition(partition, *state);
          if (!started.ok()) break;
        }
      }
      if (!started.ok()) {
        // Its options were checked by the factory; a start that fails now (a lookup table
        // gone) leaves the component without its transform: stop the pipeline, loudly.
        log::error(node->config->name, "the reloaded transform failed to start: {}", started.error().message());
        exit_code_ = 1;
        shutdown();
      }
    } else {
      Node* sink = node;
      sink->replacing = true;
      sink->next_sink = std::move(fresh->nodes[j].sink);
      sink->next_context = std::move(sink_contexts[sink_index++]);
      sink->next_config = new_config;
      ++reload_swaps_pending_;
      sink->graph_node->sink->drain([this, sink] { swap_sink(*sink); });
    }
  }
  for (auto& [node, j] : plan.kept) node->config = &fresh->component(fresh->nodes[j]);
  for (std::size_t k = 0; k < plan.added_nodes.size(); ++k) {
    auto& added = plan.added_nodes[k];
    outcome.rebuilt.push_back(added->config->name + " (added)");
    if (added->kind() == ComponentKind::Sink) ++sinks_open_;
    plan.added_running.push_back({added.get(), plan.added[k]});
    nodes_.push_back(std::move(added));
  }
  for (Node* node : plan.removed) {
    outcome.rebuilt.push_back(node->config->name + " (removed)");
    node->removed = true;
  }
  rewire(plan, *fresh);

  // Sources: removed ones stop (what they sent drains); changed ones stop and their new
  // instance starts once they have finished; added ones start now that they are wired.
  for (Node* node : plan.removed) {
    if (node->kind() == ComponentKind::Source) {
      if (node->started && !node->finished) node->graph_node->source->stop();
      else source_finished(*node);
    } else {
      if (node->input->durable()) node->input->stop_reading();  // kept on disk for a sink of that name
      schedule(*node);
    }
  }
  for (auto& [node, j] : plan.restarted) {
    outcome.rebuilt.push_back(node->config->name);
    if (node->finished) continue;  // it has ended (stdin at EOF): nothing to restart
    node->next_source = std::move(fresh->nodes[j].source);
    node->next_context = std::make_unique<NodeContext>(*this, *node);
    node->next_config = &fresh->component(fresh->nodes[j]);
    ++reload_swaps_pending_;
    node->graph_node->source->stop();  // finished() then starts the next one (restart_source)
  }
  for (auto& [added, j] : plan.added_running) {
    Node& node = *added;
    if (node.kind() != ComponentKind::Source) continue;
    Status started = node.graph_node->source->start(*node.context);
    if (!started.ok()) {
      log::error(node.config->name, "the added source failed to start: {}", started.error().message());
      node.metrics.errors.add();
      outcome.errors.push_back(fmt::format("{}: failed to start: {}", node.config->name, started.error().message()));
      source_finished(node);
      continue;
    }
    node.started = true;
  }
  if (plan.apis_changed) {
    // The old ones stop (what they had in flight is answered 503 or abandoned); their
    // contexts stay until the end, for callbacks still on the way. The new ones start.
    stop_apis();
    for (auto& slot : apis_) retired_apis_.push_back(std::move(slot));
    apis_.clear();
    for (const auto& api : fresh->config.apis) outcome.rebuilt.push_back(api.name);
    if (Status started = start_apis(*fresh); !started.ok()) {
      log::error("weir", "reload: {}", started.error().message());
      outcome.errors.push_back(started.error().message());
    }
  }
  reloaded_graphs_.push_back(std::move(fresh));
  for (auto& error : outcome.errors) pending_outcome_.errors.push_back(std::move(error));
  for (auto& name : outcome.rebuilt) pending_outcome_.rebuilt.push_back(std::move(name));
  if (--reload_swaps_pending_ == 0) complete_reload();
}

// Every edge as the new graph has it. A removed component (of this reload or one before)
// keeps its old outputs until it has drained (what it still holds goes where it went
// before); nothing sends to it any more.
void Runtime::Impl::rewire(const ReloadPlan& plan, const topology::Graph& fresh) {
  std::vector<Node*> by_fresh(fresh.nodes.size(), nullptr);
  for (const auto& [node, j] : plan.replaced) by_fresh[j] = node;
  for (const auto& [node, j] : plan.restarted) by_fresh[j] = node;
  for (const auto& [node, j] : plan.kept) by_fresh[j] = node;
  for (const auto& [node, j] : plan.added_running) by_fresh[j] = node;
  for (std::size_t j = 0; j < fresh.nodes.size(); ++j) {
    Node* node = by_fresh[j];
    node->outputs = fresh.nodes[j].outputs;
    node->consumers.assign(node->outputs.size(), {});
    node->open_inputs = 0;
  }
  for (std::size_t j = 0; j < fresh.nodes.size(); ++j) {
    for (const topology::Port& in : fresh.nodes[j].inputs) {
      Node* producer = by_fresh[in.node];
      producer->consumers[in.output].push_back(by_fresh[j]);
      if (!producer->finished) ++by_fresh[j]->open_inputs;
    }
  }
  for (auto& node : nodes_) {
    if (node->removed) node->open_inputs = 0;
  }
  for (auto& node : nodes_) {
    if (!node->removed || node->finished) continue;
    for (auto& port : node->consumers) {
      for (Node* consumer : port) ++consumer->open_inputs;
    }
  }
  // Producers that waited for a consumer's room may now have other consumers, or none.
  for (auto& node : nodes_) {
    node->waiting_upstream.clear();
    if (node->kind() == ComponentKind::Source && !node->finished && node->started && has_room(*node)) {
      node->graph_node->source->resume();
    }
    if (node->kind() != ComponentKind::Source) schedule(*node);
  }
}

// The running instance and its context, kept until exit (batches in flight may point into
// its memory).
Runtime::Impl::Retired& Runtime::Impl::retire_instance(Node& node) {
  Retired& retired = retired_.emplace_back();
  retired.context = std::move(node.context);
  retired.source = std::move(node.graph_node->source);
  retired.transform = std::move(node.graph_node->transform);
  retired.sink = std::move(node.graph_node->sink);
  return retired;
}

// A source's or sink's successor, prepared by begin_reload(), takes the old one's place.
void Runtime::Impl::install_next(Node& node) {
  retire_instance(node);
  if (node.next_source) node.graph_node->source = std::move(node.next_source);
  if (node.next_sink) node.graph_node->sink = std::move(node.next_sink);
  node.context = std::move(node.next_context);
  node.config = node.next_config;
  node.next_config = nullptr;
}

void Runtime::Impl::restart_source(Node& node) {
  install_next(node);
  Status started = node.graph_node->source->start(*node.context);
  if (!started.ok()) {
    log::error(node.config->name, "the reloaded source failed to start: {}", started.error().message());
    node.metrics.errors.add();
    pending_outcome_.errors.push_back(fmt::format("{}: failed to start: {}", node.config->name, started.error().message()));
    node.finished = true;
    close_outputs(node);
  }
  if (--reload_swaps_pending_ == 0) complete_reload();
}

void Runtime::Impl::swap_sink(Node& node) {
  install_next(node);
  apply_memory_limits(node);
  node.replacing = false;
  schedule(node);
  if (!node.input->full()) wake_upstream(node);
  if (--reload_swaps_pending_ == 0) complete_reload();
}

// A memory channel takes the new limits; what it holds moves over in order.
void Runtime::Impl::apply_memory_limits(Node& node) {
  if (node.input->durable()) return;
  auto fresh = buffer::make_memory_channel(channel_limits(*node.config));
  while (node.input->readable()) fresh->push(node.input->pop());
  node.input = std::move(fresh);
  update_buffer_gauges(node);
}

void Runtime::Impl::complete_reload() {
  ReloadOutcome outcome = std::move(pending_outcome_);
  ++generation_;
  ++reloads_;
  outcome.status = "reloaded";
  outcome.generation = generation_;
  std::string names;
  for (const auto& n : outcome.rebuilt) names += (names.empty() ? "" : ", ") + n;
  log::info("weir", "reloaded: generation {}, rebuilt {}", generation_, names);
  finish_reload(std::move(outcome));
}

void Runtime::Impl::finish_reload(ReloadOutcome outcome) {
  if (outcome.status == "failed") ++reload_failures_;
  reloading_ = false;
  if (reload_again_ && !stopping_ && !completed_) {
    // Callers waiting so far get this outcome only if no request came in meanwhile: the
    // next reload covers theirs too, so they wait for that one.
    reload_again_ = false;
    begin_reload("requested during the last reload");
    return;
  }
  auto waiters = std::move(reload_waiters_);
  reload_waiters_.clear();
  for (auto& done : waiters) done(outcome);
}

// --watch-config: the config files are polled once a second (inotify misses editors that
// replace a file, and symlink swaps of mounted config maps); a change is applied once the
// files have stayed the same for one more poll, so a save in several writes reloads once.
void Runtime::Impl::start_config_watch() {
  config_signature_ = config_files_signature();
  start_timer(watch_timer_, &loop_, this, [](uv_timer_t* t) {
    auto* self = static_cast<Impl*>(t->data);
    std::string now = self->config_files_signature();
    if (now != self->config_signature_) {
      self->config_signature_ = std::move(now);
      self->config_changed_ = true;
      return;
    }
    if (self->config_changed_) {
      self->config_changed_ = false;
      self->request_reload("a config file changed", nullptr);
    }
  }, 1000, 1000);
  uv_unref(watch_timer_.base());
}

std::string Runtime::Impl::config_files_signature() const {
  std::string out;
  auto add = [&out](const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      out += path + ":missing;";
      return;
    }
    out += fmt::format("{}:{}:{}:{}.{};", path, st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  };
  for (const std::string& path : graph_.config.files) {
    add(path);
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec)) continue;
    std::vector<std::string> entries;  // a directory's *.yaml files, as the loader reads them
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) entries.push_back(entry.path().string());
    std::sort(entries.begin(), entries.end());
    for (const auto& entry : entries) add(entry);
  }
  return out;
}

}  // namespace weir::runtime
