// Signals and reload.
//
// A reload (SIGHUP, --watch-config, POST /reload) reads and validates the whole config
// again. An invalid one changes nothing: its errors are logged with file:line:col and the
// failure is counted. A valid one is applied as a diff, on the loop, between batches:
// - a transform whose options changed is flushed (it emits what it held) and replaced;
//   its input channel and everything in it stay, so the next batch meets the new one;
// - a sink whose options changed: the new instance is started first (a failure there
//   refuses the reload), then the old one drains what it holds (batches waiting for a
//   timeout are sent now, not waited out) and the new one takes over its input channel,
//   disk buffer included;
// - everything else keeps running untouched.
// Refused, with the old pipeline running: components added or removed, a changed type,
// inputs or outputs, changed sources (a file source's checkpoints cannot be shared by two
// instances), a disk buffer's options, and the global options (data_dir, api, dead_letter,
// shutdown_timeout). Those take a restart.
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
Result<std::vector<std::pair<Runtime::Impl::Node*, std::size_t>>> Runtime::Impl::plan_reload(
    const topology::Graph& fresh) {
  const config::PipelineConfig& now = graph_.config;
  const config::PipelineConfig& next = fresh.config;
  std::vector<std::string> refused;
  if (now.data_dir != next.data_dir) refused.push_back("data_dir changed");
  if (now.api_address != next.api_address) refused.push_back("api.address changed");
  if (now.dead_letter_path != next.dead_letter_path) refused.push_back("dead_letter.path changed");
  if (now.shutdown_timeout != next.shutdown_timeout) refused.push_back("shutdown_timeout changed");
  std::vector<std::pair<Node*, std::size_t>> changed;
  std::vector<bool> matched(fresh.nodes.size(), false);
  for (auto& node : nodes_) {
    const config::ComponentConfig& old_config = *node->config;
    std::size_t j = 0;
    while (j < fresh.nodes.size() && fresh.component(fresh.nodes[j]).name != old_config.name) ++j;
    if (j == fresh.nodes.size()) {
      refused.push_back(fmt::format("{} was removed", old_config.name));
      continue;
    }
    matched[j] = true;
    const config::ComponentConfig& new_config = fresh.component(fresh.nodes[j]);
    if (new_config.kind != old_config.kind || new_config.type != old_config.type) {
      refused.push_back(fmt::format("{}: kind or type changed", old_config.name));
    } else if (inputs_text(new_config) != inputs_text(old_config) ||
               fresh.nodes[j].outputs != node->graph_node->outputs) {
      refused.push_back(fmt::format("{}: inputs or outputs changed", old_config.name));
    } else if (new_config.options.fingerprint() != old_config.options.fingerprint()) {
      if (node->kind() == ComponentKind::Source) {
        refused.push_back(fmt::format("{}: a source's options changed", old_config.name));
      } else if (node->input->durable() && buffer_options_differ(new_config.options, old_config.options)) {
        refused.push_back(fmt::format("{}: its disk buffer's options changed", old_config.name));
      } else {
        changed.emplace_back(node.get(), j);
      }
    }
  }
  for (std::size_t j = 0; j < fresh.nodes.size(); ++j) {
    if (!matched[j]) refused.push_back(fmt::format("{} was added", fresh.component(fresh.nodes[j]).name));
  }
  if (!refused.empty()) {
    std::string why;
    for (const auto& r : refused) why += (why.empty() ? "" : "; ") + r;
    return Error(why + " (these take a restart; transforms' and sinks' options are reloaded in place)");
  }
  return changed;
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
  auto plan = plan_reload(*fresh);
  if (!plan.ok()) return fail({plan.error().message()});
  if (plan.value().empty()) {
    log::info("weir", "reload: nothing changed (generation {})", generation_);
    outcome.status = "unchanged";
    return finish_reload(std::move(outcome));
  }

  // New sinks start before anything changes, so one that cannot start refuses the reload.
  std::vector<std::unique_ptr<NodeContext>> sink_contexts;
  for (auto& [node, j] : plan.value()) {
    if (node->kind() != ComponentKind::Sink) continue;
    auto context = std::make_unique<NodeContext>(*this, *node);
    Status started = fresh->nodes[j].sink->start(*context);
    if (!started.ok()) {
      return fail({fmt::format("{}: the new sink failed to start: {}", node->config->name, started.error().message())});
    }
    sink_contexts.push_back(std::move(context));
  }

  std::size_t sink_index = 0;
  for (auto& [node, j] : plan.value()) {
    const config::ComponentConfig* new_config = &fresh->component(fresh->nodes[j]);
    outcome.rebuilt.push_back(node->config->name);
    if (node->kind() == ComponentKind::Transform) {
      Retired retired;
      retired.context = std::move(node->context);
      retired.transform = std::move(node->graph_node->transform);
      if (node->started && !node->finished) retired.transform->flush(*retired.context);
      node->context = std::make_unique<NodeContext>(*this, *node);
      node->graph_node->transform = std::move(fresh->nodes[j].transform);
      node->config = new_config;
      apply_memory_limits(*node);
      Status started = node->graph_node->transform->start(*node->context);
      // The new instance carries on from the old one's state (per-user clocks survive an
      // option change); the held acknowledgements stay with the node's state keeper.
      if (started.ok() && node->state && retired.transform->keeps_state()) {
        started = node->graph_node->transform->restore(retired.transform->snapshot());
      }
      if (!started.ok()) {
        // Its options were checked by the factory; a start that fails now (a lookup table
        // gone) leaves the component without its transform: stop the pipeline, loudly.
        log::error(node->config->name, "the reloaded transform failed to start: {}", started.error().message());
        exit_code_ = 1;
        shutdown();
      }
      retired_.push_back(std::move(retired));
      schedule(*node);
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
  reloaded_graphs_.push_back(std::move(fresh));
  pending_outcome_ = std::move(outcome);
  if (reload_swaps_pending_ == 0) complete_reload();
}

void Runtime::Impl::swap_sink(Node& node) {
  Retired retired;
  retired.context = std::move(node.context);
  retired.sink = std::move(node.graph_node->sink);
  retired_.push_back(std::move(retired));
  node.graph_node->sink = std::move(node.next_sink);
  node.context = std::move(node.next_context);
  node.config = node.next_config;
  node.next_config = nullptr;
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
