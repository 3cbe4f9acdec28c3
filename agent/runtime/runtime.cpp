// Channels and scheduling: the runtime's core (see runtime_impl.hpp for its other parts).
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <random>

#include <fmt/format.h>

#include "runtime/runtime_impl.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/time.hpp"

namespace weir::runtime {

std::string human_bytes(std::uint64_t bytes) {
  if (bytes >= (1ull << 30)) return fmt::format("{:.2f} GiB", double(bytes) / double(1ull << 30));
  if (bytes >= (1ull << 20)) return fmt::format("{:.2f} MiB", double(bytes) / double(1ull << 20));
  if (bytes >= (1ull << 10)) return fmt::format("{:.2f} KiB", double(bytes) / double(1ull << 10));
  return fmt::format("{} B", bytes);
}

const std::string& NodeContext::name() const { return node_.config->name; }
const std::string& NodeContext::type() const { return node_.config->type; }
ComponentMetrics& NodeContext::metrics() { return node_.metrics; }
bool NodeContext::emit(BatchPtr batch) { return emit_to(0, std::move(batch)); }
bool NodeContext::emit_to(std::size_t output, BatchPtr batch) {
  rt_.emit_from(node_, std::move(batch), output);
  return rt_.source_has_room(node_);
}
Random& NodeContext::random() { return node_.random; }
bool NodeContext::output_connected(std::size_t output) const {
  return output < node_.consumers.size() && !node_.consumers[output].empty();
}
bool NodeContext::downstream_ready() const {
  if (rt_.options_.lockstep) return rt_.quiescent();
  return node_.chain && node_.chain->is_open() ? rt_.chain_has_room(node_) : rt_.has_room(node_);
}
// The component's own state files (ComponentContext::save_state), apart from a
// transform's snapshots (<name>.{0,1}).
Result<std::optional<std::string>> NodeContext::load_state() {
  if (rt_.options_.ephemeral) return std::optional<std::string>();
  return StateFiles(rt_.graph_.config.data_dir + "/state/" + node_.config->name + ".saved").load();
}

Status NodeContext::save_state(std::string_view state) {
  if (rt_.options_.ephemeral) return {};
  std::string dir = rt_.graph_.config.data_dir + "/state";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error(fmt::format("cannot create {}: {}", dir, ec.message()));
  if (!saved_state_) saved_state_ = std::make_unique<StateFiles>(dir + "/" + node_.config->name + ".saved");
  if (!saved_state_loaded_) {
    (void)saved_state_->load();  // continues the save numbers of the files there
    saved_state_loaded_ = true;
  }
  return saved_state_->save(state);
}

void NodeContext::fail_pipeline(std::string_view reason) {
  log::error(node_.config->name, "{}: stopping the pipeline", reason);
  node_.metrics.errors.add();
  rt_.exit_code_ = 1;
  rt_.shutdown();
}

Runtime::Impl::Impl(topology::Graph& graph, RunOptions options)
    : graph_(graph),
      options_(options),
      dead_letters_(graph.config.dead_letter_path, graph.config.dead_letter_max_bytes) {
  clock_ = options_.clock ? options_.clock : std::make_shared<SystemClock>();
  if (options_.seed) {
    seed_ = *options_.seed;
  } else {
    std::random_device entropy;  // the runtime's own: components only see their Random
    seed_ = (static_cast<std::uint64_t>(entropy()) << 32) ^ entropy();
  }
  dead_letters_.set_clock(clock_.get());
  if (uv_loop_init(&loop_) == 0) loop_ready_ = dead_letters_.attach(&loop_).ok();
  for (std::size_t i = 0; i < graph_.nodes.size(); ++i) {
    nodes_.push_back(make_node(graph_.nodes[i], graph_.component(graph_.nodes[i]), i));
  }
  for (auto& node : nodes_) {
    for (const topology::Port& in : node->graph_node->inputs) {
      nodes_[in.node]->consumers[in.output].push_back(node.get());
      ++node->open_inputs;
    }
  }
}

// A runtime node for a component of a graph (its instance stays in `graph_node`), with its
// context and a memory input channel (a sink's disk buffer is opened at its start).
std::unique_ptr<Runtime::Impl::Node> Runtime::Impl::make_node(topology::Node& graph_node,
                                                            const config::ComponentConfig& config, std::size_t index) {
  auto node = std::make_unique<Node>();
  node->index = index;
  node->graph_node = &graph_node;
  node->config = &config;
  node->outputs = graph_node.outputs;
  node->random.reseed(Random::seed_for(seed_, config.name));
  if (node->kind() != ComponentKind::Source) {
    node->drop_newest = node->kind() == ComponentKind::Sink && config.options.string("buffer.when_full") == "drop_newest";
    buffer::ChannelLimits limits = channel_limits(config);
    node->input = buffer::make_memory_channel(limits);
    node->metrics.buffer_max_events.set(limits.max_events);
  }
  node->consumers.resize(node->outputs.size());
  node->context = std::make_unique<NodeContext>(*this, *node);
  return node;
}

buffer::ChannelLimits Runtime::Impl::channel_limits(const config::ComponentConfig& config) {
  buffer::ChannelLimits limits;
  limits.max_events = static_cast<std::size_t>(std::max<std::int64_t>(1, config.options.integer("buffer.max_events")));
  limits.max_bytes = std::max<std::uint64_t>(1, config.options.bytes("buffer.max_bytes"));
  return limits;
}

// A sink's disk buffer is opened (and recovered) before the sink starts, in the loop the
// buffer's jobs run on.
Status Runtime::Impl::open_disk_buffer(Node& node) {
  const Options& options = node.config->options;
  if (node.kind() != ComponentKind::Sink || options.string("buffer.type") != "disk" || options_.ephemeral) return {};
  buffer::DiskChannelOptions disk;
  disk.directory = graph_.config.data_dir + "/buffers/" + node.config->name;
  disk.component = node.config->name;
  disk.memory = channel_limits(*node.config);
  disk.max_size = options.bytes("buffer.max_size");
  disk.sync = options.string("buffer.sync") == "always";
  disk.coverage = coverage_;
  auto opened = buffer::open_disk_channel(&loop_, std::move(disk), node.metrics);
  if (!opened.ok()) return opened.error();
  node.input = std::move(opened.value());
  watch_channel(node);
  return {};
}

// A transform that keeps state: its last snapshot is loaded before any disk buffer opens
// (they set aside what it does not cover), and handed to it after its start, before its
// first batch.
Status Runtime::Impl::load_transform_state(Node& node) {
  Transform& transform = *node.graph_node->transform;
  if (!transform.keeps_state() || options_.ephemeral) return {};
  if (node.partition_states) return {};  // per partition: restored as its sources are given partitions
  std::string dir = graph_.config.data_dir + "/state";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error(fmt::format("cannot create {}: {}", dir, ec.message()));
  node.state = std::make_shared<TransformState>(&loop_, node.config->name, dir + "/" + node.config->name, node.metrics,
                                                coverage_);
  node.state->on_idle = [this] { complete_when_states_idle(); };
  Node* owner = &node;  // the transform may be replaced on reload: asked through the node
  node.state->take_snapshot = [owner] { return owner->graph_node->transform->try_snapshot(); };
  auto loaded = node.state->load();
  if (!loaded.ok()) return loaded.error();
  node.loaded_state = std::move(loaded.value());
  return {};
}

// A sink opens its disk buffer (if it has one) and then starts; a transform starts and then
// gets its saved state. At start-up and for components a reload adds.
Status Runtime::Impl::start_sink(Node& node) {
  if (Status opened = open_disk_buffer(node); !opened.ok()) return opened;
  return node.graph_node->sink->start(*node.context);
}

Status Runtime::Impl::start_transform(Node& node) {
  if (Status started = node.graph_node->transform->start(*node.context); !started.ok()) return started;
  return restore_transform_state(node);
}

Status Runtime::Impl::restore_transform_state(Node& node) {
  if (!node.loaded_state) return {};
  std::string state = std::move(*node.loaded_state);
  node.loaded_state.reset();
  Transform& transform = *node.graph_node->transform;
  if (Status restored = transform.restore(state); !restored.ok()) {
    node.metrics.errors.add();
    log::error(node.config->name, "state: cannot restore the last snapshot ({}); starting empty",
               restored.error().message());
    return {};
  }
  log::info(node.config->name, "state restored ({} bytes)", state.size());
  return {};
}

void Runtime::Impl::take_snapshot(Node& node, bool now) {
  if (node.partition_states) {
    if (now) node.partition_states->snapshot_now();
    else node.partition_states->processed();
  }
  if (!node.state) return;
  if (now) node.state->snapshot_now();
  else node.state->processed();
}

void Runtime::Impl::watch_channel(Node& node) {
  Node* watched = &node;
  node.input->on_change = [this, watched] {
    update_buffer_gauges(*watched);
    schedule(*watched);
    if (!watched->input->full()) wake_upstream(*watched);
  };
}

void Runtime::Impl::update_buffer_gauges(Node& node) {
  node.metrics.buffer_events.set(node.input->events());
  node.metrics.buffer_bytes.set(node.input->bytes());
}

Runtime::Impl::~Impl() {
  // A decoding job still running must not call into what goes away.
  for (auto& node : nodes_) {
    if (node->chain) node->chain->close();
  }
  if (abandoned_) {
    // Components may still have requests in flight on the loop: leave them be, the
    // process is about to exit.
    for (auto& node : nodes_) {
      (void)node->graph_node->source.release();
      (void)node->graph_node->transform.release();
      (void)node->graph_node->sink.release();
      (void)node->next_source.release();
    }
    for (auto& retired : retired_) {
      (void)retired.source.release();
      (void)retired.transform.release();
      (void)retired.sink.release();
    }
    for (auto& node : nodes_) (void)node->next_sink.release();
    for (auto& api : graph_.apis) (void)api.release();
    for (auto& reloaded : reloaded_graphs_) {
      for (auto& api : reloaded->apis) (void)api.release();
    }
    for (auto& slot : apis_) (void)slot->server.release();
    for (auto& slot : retired_apis_) (void)slot->server.release();
    return;
  }
  idle_.close();
  sigint_.close();
  sigterm_.close();
  sighup_.close();
  deadline_.close();
  watch_timer_.close();
  dead_letters_.flush();  // its last callbacks release acknowledgements: before the components go
  dead_letters_.detach();
  // Through the runtime's nodes: components added by a reload live in that reload's graph.
  for (auto& node : nodes_) node->graph_node->source.reset();
  for (auto& node : nodes_) node->next_source.reset();
  for (auto& node : nodes_) node->graph_node->transform.reset();
  for (auto& node : nodes_) node->graph_node->sink.reset();
  for (auto& node : nodes_) node->next_sink.reset();
  retired_.clear();
  // APIs: their file work ends first (Api::stop's done, a few seconds at most), then they
  // go, then their contexts and servers; their handles belong to the loop.
  auto stopping_apis = [this] {
    auto stopping = [](const auto& slot) { return slot->stopped && !slot->stop_done; };
    return std::any_of(apis_.begin(), apis_.end(), stopping) ||
           std::any_of(retired_apis_.begin(), retired_apis_.end(), stopping);
  };
  for (int turn = 0; turn < 5000 && stopping_apis(); ++turn) {
    uv_run(&loop_, UV_RUN_NOWAIT);
    if (stopping_apis()) uv_sleep(1);
  }
  for (auto& api : graph_.apis) api.reset();
  for (auto& reloaded : reloaded_graphs_) {
    for (auto& api : reloaded->apis) api.reset();
  }
  apis_.clear();
  retired_apis_.clear();
  if (!loop_ready_) return;
  // A disk buffer's write or removal in flight reports back to the loop: wait for it (file
  // work, it ends), so the loop is not freed under the thread that will post to it.
  auto channel_busy = [this] {
    return std::any_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->input && n->input->busy(); });
  };
  auto state_busy = [this] {
    return std::any_of(nodes_.begin(), nodes_.end(), [](const auto& n) {
      return (n->state && n->state->busy()) || (n->partition_states && n->partition_states->busy());
    });
  };
  for (int turn = 0; turn < 10000 && (channel_busy() || state_busy()); ++turn) uv_run(&loop_, UV_RUN_ONCE);
  for (auto& node : nodes_) {
    node->input.reset();  // a disk buffer's timers belong to the loop
    if (node->state) node->state->close();
    if (node->partition_states) node->partition_states->close();  // its stores' handles belong to the loop
  }
  uv_run(&loop_, UV_RUN_NOWAIT);
  uv_walk(
      &loop_, [](uv_handle_t* handle, void*) {
        if (!uv_is_closing(handle)) uv_close(handle, nullptr);
      },
      nullptr);
  // Close callbacks need a few turns. A request stuck in the thread pool (a read from an
  // idle socket) would keep the loop busy forever: then the loop is left as it is.
  for (int turn = 0; turn < 100 && uv_loop_close(&loop_) == UV_EBUSY; ++turn) uv_run(&loop_, UV_RUN_NOWAIT);
}

const ComponentMetrics& Runtime::Impl::metrics(std::size_t node) const { return nodes_[node]->metrics; }

void Runtime::Impl::schedule(Node& node) {
  if (node.scheduled || completed_) return;
  node.scheduled = true;
  ready_.push_back(&node);
  if (idle_.initialized() && !uv_is_active(idle_.base())) {
    uv_idle_start(idle_.get(), [](uv_idle_t* h) { static_cast<Impl*>(h->data)->on_idle(); });
  }
}

void Runtime::Impl::on_idle() {
  std::vector<Node*> batch;
  batch.swap(ready_);
  for (Node* node : batch) {
    node->scheduled = false;
    pump(*node);
  }
  if (ready_.empty() && options_.lockstep) release_lockstep();
  if (ready_.empty() && idle_.initialized()) uv_idle_stop(idle_.get());
}

// What a source's emit() answers. In lockstep the answer is always "wait": the source is
// resumed once the pipeline has taken in everything it emitted.
bool Runtime::Impl::source_has_room(Node& source) {
  if (!options_.lockstep) return has_room(source);
  if (std::find(lockstep_waiting_.begin(), lockstep_waiting_.end(), &source) == lockstep_waiting_.end()) {
    lockstep_waiting_.push_back(&source);
  }
  return false;
}

bool Runtime::Impl::quiescent() const {
  return std::none_of(nodes_.begin(), nodes_.end(), [](const auto& n) { return n->input && n->input->readable(); });
}

// Lockstep: the pipeline has run dry; the waiting sources go on, in the graph's order.
void Runtime::Impl::release_lockstep() {
  if (lockstep_waiting_.empty() || !quiescent()) return;
  std::vector<Node*> waiting;
  waiting.swap(lockstep_waiting_);
  for (Node* source : waiting) {
    if (!source->finished) source->graph_node->source->resume();
  }
}

BatchPtr Runtime::Impl::pop(Node& node) {
  BatchPtr batch = node.input->pop();
  update_buffer_gauges(node);
  if (!node.input->full()) wake_upstream(node);
  if (!batch) return batch;
  node.metrics.events_received.add(batch->size());
  node.metrics.bytes_received.add(batch->byte_size());
  if (node.kind() == ComponentKind::Sink) {
    node.metrics.batch_latency_nanos_sum.add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, EventBatch::steady_now() - batch->created_at())));
    node.metrics.batch_latency_count.add();
  }
  return batch;
}

void Runtime::Impl::wake_upstream(Node& node) {
  if (node.waiting_upstream.empty()) return;
  std::vector<Node*> waiting;
  waiting.swap(node.waiting_upstream);
  for (Node* producer : waiting) {
    if (producer->kind() == ComponentKind::Transform) {
      schedule(*producer);
    } else if (!producer->finished && !options_.lockstep && producer->context->downstream_ready()) {
      producer->graph_node->source->resume();
    }
  }
}

bool Runtime::Impl::has_room(Node& producer) {
  bool room = true;
  for (auto& port : producer.consumers) {
    for (Node* consumer : port) {
      if (consumer->drop_newest || !consumer->input->full()) continue;
      room = false;
      auto& waiting = consumer->waiting_upstream;
      if (std::find(waiting.begin(), waiting.end(), &producer) == waiting.end()) waiting.push_back(&producer);
    }
  }
  return room;
}

void Runtime::Impl::enqueue(Node& consumer, BatchPtr batch) {
  if (consumer.drop_newest && consumer.input->full()) {
    // Not delivered: an acknowledging source answers 503 for it, a file source reads its
    // lines again into the dead-letter file and moves its checkpoint past them.
    consumer.metrics.events_dropped.add(batch->size());
    batch->fail("dropped: the buffer of " + consumer.config->name + " is full (when_full: drop_newest)");
    std::uint64_t n = ++consumer.drop_logs;
    if (n <= 5 || n % 1000 == 0) {
      log::warn(consumer.config->name, "buffer full ({} events, {}): dropped a batch of {} events (when_full: drop_newest; {} batches so far)",
                consumer.input->events(), human_bytes(consumer.input->bytes()), batch->size(), n);
    }
    return;
  }
  consumer.input->push(std::move(batch));
  update_buffer_gauges(consumer);
  schedule(consumer);
}

void Runtime::Impl::emit_from(Node& producer, BatchPtr batch, std::size_t output) {
  if (!batch || batch->empty()) return;
  // A batch a stateful transform made on its own (from a timer, or at flush) changed its
  // state as much as one it processed: it is numbered the same way, so a disk buffer
  // downstream hands it out only once a snapshot covers it (else a crash would emit it twice).
  bool own_batch = producer.kind() == ComponentKind::Transform && (producer.state || producer.partition_states) &&
                  producer.current_acks == nullptr;
  if (own_batch && producer.state) producer.state->hold(*batch);
  if (own_batch && producer.partition_states) producer.partition_states->hold(*batch);
  if (producer.kind() == ComponentKind::Source) {
    // The chain's first member is about to be called on the loop: no run may be in progress.
    if (output == 0) close_chain(producer, "a batch emitted on the loop");
    source_emitting(producer, batch->acks(), batch->size(), batch->byte_size());
  }
  producer.metrics.events_sent.add(batch->size());
  producer.metrics.bytes_sent.add(batch->byte_size());
  if (output >= producer.consumers.size()) {
    log::error(producer.config->name, "emitted to output #{} which does not exist; {} events dropped", output,
               batch->size());
    producer.metrics.errors.add();
    producer.metrics.events_dropped.add(batch->size());
    return;
  }
  for (auto& [tapped, tap] : producer.taps) {
    if (tapped == output) tap->offer(*batch);
  }
  auto& consumers = producer.consumers[output];
  if (consumers.empty()) {
    // An output nothing reads from (validate warned about it): discarded, counted.
    producer.metrics.events_dropped.add(batch->size());
    return;
  }
  for (std::size_t i = 0; i + 1 < consumers.size(); ++i) enqueue(*consumers[i], batch->clone());
  enqueue(*consumers.back(), std::move(batch));
  if (own_batch && !producer.finished) take_snapshot(producer, false);  // at flush the runtime takes one itself
}

// Every node downstream of `from`, once each.
std::vector<Runtime::Impl::Node*> Runtime::Impl::downstream_of(Node& from) {
  std::vector<Node*> found;
  std::set<Node*> seen;
  std::vector<Node*> todo;
  for (auto& port : from.consumers) todo.insert(todo.end(), port.begin(), port.end());
  while (!todo.empty()) {
    Node* node = todo.back();
    todo.pop_back();
    if (!seen.insert(node).second) continue;
    found.push_back(node);
    for (auto& port : node->consumers) todo.insert(todo.end(), port.begin(), port.end());
  }
  return found;
}

// ADR 017: downstream of a source whose input is partitioned (Kafka), one transform may
// keep its state per partition; its snapshots go where the source keeps them. A transform
// that keeps a whole state there would give results that depend on which partitions this
// weir reads (warned), and one fed by partitioned and other sources both has no single way
// to keep it (refused).
Status Runtime::Impl::find_partition_owners() {
  for (auto& source : nodes_) {
    if (source->kind() != ComponentKind::Source || !source->graph_node->source->partitioned()) continue;
    std::vector<Node*> owners;
    for (Node* node : downstream_of(*source)) {
      if (node->kind() != ComponentKind::Transform) continue;
      Transform& transform = *node->graph_node->transform;
      if (transform.keeps_state() && transform.partitions_state()) {
        owners.push_back(node);
      } else if (transform.keeps_state()) {
        log::warn(node->config->name, "keeps its state on this machine, not per partition of '{}': with several weirs "
                  "in its consumer group, what it makes depends on which partitions this one reads",
                  source->config->name);
      }
    }
    if (owners.size() > 1) {
      return Error(fmt::format("'{}' and '{}' both keep state per partition of '{}': only one transform after a "
                               "partitioned source may", owners[0]->config->name, owners[1]->config->name,
                               source->config->name));
    }
    if (owners.empty() || options_.ephemeral) continue;
    Node* owner = owners.front();
    source->partition_owner = owner;
    if (!owner->partition_states) {
      owner->partition_states = std::make_unique<PartitionStates>(
          &loop_, owner->config->name, owner->metrics, [owner] { return owner->graph_node->transform.get(); });
      owner->partition_states->on_idle = [this] { complete_when_states_idle(); };
    }
  }
  // Every source that reaches a transform keeping state per partition must be partitioned.
  for (auto& source : nodes_) {
    if (source->kind() != ComponentKind::Source || source->graph_node->source->partitioned()) continue;
    for (Node* node : downstream_of(*source)) {
      if (node->partition_states) {
        return Error(fmt::format("'{}' keeps its state per partition of a partitioned source, and also takes events "
                                 "from '{}', which has no partitions", node->config->name, source->config->name));
      }
    }
  }
  return {};
}

void NodeContext::partition_assigned(const std::string& partition, std::shared_ptr<PartitionStateStore> store,
                                     std::function<void(Result<std::optional<std::int64_t>>)> ready) {
  Runtime::Impl::Node* owner = node_.partition_owner;
  if (owner == nullptr || !owner->partition_states) return ready(std::optional<std::int64_t>());
  owner->partition_states->assigned(partition, std::move(store), std::move(ready));
}

void NodeContext::partition_revoked(const std::string& partition, bool settled) {
  Runtime::Impl::Node* owner = node_.partition_owner;
  if (owner != nullptr && owner->partition_states) owner->partition_states->revoked(partition, settled);
}

// A source's side of emitting a batch with these acknowledgements: a dead letter it could
// not write fails the batch; its dead letters (undecodable lines) come before the batch, whose
// acknowledgement (a file's checkpoint) waits until they are in the file; its input counted.
void Runtime::Impl::source_emitting(Node& source, const std::vector<AckRef>& acks, std::uint64_t events,
                                    std::uint64_t bytes) {
  if (!source.dead_letter_failure.empty()) {
    for (const AckRef& ack : acks) ack->fail(source.dead_letter_failure);
    source.dead_letter_failure.clear();
  }
  hold_until_dead_letters_written(source, acks);
  source.metrics.events_received.add(events);
  source.metrics.bytes_received.add(bytes);
}

void Runtime::Impl::pump(Node& node) {
  // A budget per turn keeps one busy component from starving the loop's I/O.
  int budget = 16;
  buffer::Channel& input = *node.input;
  if (node.kind() == ComponentKind::Transform) {
    // A closed chain's member waits until what it made off the loop is emitted (emit_in_order
    // schedules it then): its batches are numbered in the order it saw them.
    if (node.in_chain != nullptr && !node.in_chain->settled()) return;
    while (input.readable() && budget-- > 0) {
      if (!has_room(node)) return;  // woken by wake_upstream
      if (BatchPtr batch = pop(node)) {
        if (node.state) node.state->hold(*batch);
        std::optional<std::string> stray = node.partition_states ? node.partition_states->hold(*batch) : std::nullopt;
        std::vector<AckRef> acks = batch->acks();
        with_batch_acks(node, acks, [&] { node.graph_node->transform->process(std::move(batch), *node.context); });
        if (stray) node.partition_states->forget_stray(*stray);
      }
    }
    take_snapshot(node, false);
  } else if (node.kind() == ComponentKind::Sink) {
    if (node.replacing) return;  // rescheduled once the new instance took over
    Sink& sink = *node.graph_node->sink;
    while (input.readable() && budget-- > 0 && sink.ready()) {
      if (BatchPtr batch = pop(node)) {
        std::vector<AckRef> acks = batch->acks();
        with_batch_acks(node, acks, [&] { sink.consume(std::move(batch)); });
      }
    }
    if (input.readable() && !sink.ready()) return;  // the sink calls ready_again()
  }
  if (input.readable()) {
    schedule(node);
    return;
  }
  maybe_finish(node);
}

void Runtime::Impl::maybe_finish(Node& node) {
  if (node.kind() == ComponentKind::Source) return;  // sources say when they are finished
  // A disk buffer is idle once what came in is durable and (unless shutting down) handed out.
  if (node.finished || node.open_inputs > 0 || !node.input->idle() || !node.started || node.replacing) return;
  node.finished = true;
  if (node.kind() == ComponentKind::Transform) {
    node.graph_node->transform->flush(*node.context);
    take_snapshot(node, true);
    close_outputs(node);
  } else if (node.kind() == ComponentKind::Sink) {
    Node* sink = &node;
    node.graph_node->sink->drain([this, sink] { sink_done(*sink); });
  }
}

void Runtime::Impl::close_outputs(Node& node) {
  for (auto& port : node.consumers) {
    for (Node* consumer : port) {
      --consumer->open_inputs;
      schedule(*consumer);
    }
  }
}

void Runtime::Impl::source_finished(Node& node) {
  if (node.finished) return;
  if (node.next_source) return restart_source(node);  // reload: the new instance takes over
  node.finished = true;
  if (node.chain) {
    close_chain(node, "the source finished");  // before its consumers flush, on the loop
    // Calls whose batches it decoded and will not deliver now: their effect on a stateful
    // member is not numbered, so its state is not saved again (ADR 015); the rest goes on.
    if (!node.chain->settled()) node.chain->poison("its source stopped before every batch it processed was emitted");
    for (std::unique_ptr<FusedOutput>& out : node.chain->abandon_missing()) emit_chain_output(*node.chain, *out);
    emit_in_order(*node.chain);  // settled now: its members go back to the loop
  }
  log::debug(node.config->name, "source finished");
  close_outputs(node);
}

void Runtime::Impl::sink_done(Node& node) {
  if (node.done) return;
  node.done = true;
  if (--sinks_open_ == 0) complete_when_states_idle();
}

// Every sink drained; a transform's state keeper may still hold acknowledgements until its
// last snapshot is on disk.
void Runtime::Impl::complete_when_states_idle() {
  if (sinks_open_ != 0) return;
  for (auto& node : nodes_) {
    if (node->state && !node->state->idle()) return;  // its on_idle calls back
    if (node->partition_states && !node->partition_states->idle()) return;
  }
  complete();
}

void Runtime::Impl::complete() {
  if (completed_) return;
  completed_ = true;
  api_.reset();
  stop_apis();  // (their contexts stay until the runtime goes: an API may still be called back)
  taps_.clear();  // unanswered: their connections went with the API server
  idle_.close();
  sigint_.close();
  sigterm_.close();
  deadline_.close();
  trim_timer_.close();
  watch_timer_.close();
  uv_stop(&loop_);
}

void Runtime::Impl::abandon(int exit_code) {
  exit_code_ = exit_code;
  abandoned_ = true;
  completed_ = true;
  uv_stop(&loop_);
}

void Runtime::Impl::shutdown() {
  if (stopping_ || completed_) return;
  stopping_ = true;
  stop_apis();
  auto timeout = graph_.config.shutdown_timeout;
  log::info("weir", "draining: stopping sources, flushing sinks (deadline {:.1f}s)",
            std::chrono::duration<double>(timeout).count());
  for (auto& node : nodes_) {
    if (node->kind() == ComponentKind::Source && !node->finished) {
      if (node->started) node->graph_node->source->stop();
      else source_finished(*node);
    }
  }
  // What a disk buffer holds waits there for the next start instead of for the deadline.
  for (auto& node : nodes_) {
    if (node->input && node->input->durable()) {
      node->input->stop_reading();
      schedule(*node);
    }
  }
  if (sinks_open_ == 0) complete_when_states_idle();  // a weir of APIs alone
  if (!completed_) {
    auto ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count());
    start_timer(
        deadline_, &loop_, this,
        [](uv_timer_t* h) {
          auto* self = static_cast<Impl*>(h->data);
          std::string pending;
          for (auto& node : self->nodes_) {
            if (!node->drained()) pending += (pending.empty() ? "" : ", ") + node->config->name;
          }
          log::error("weir", "drain deadline passed; still busy: {}; exiting without them", pending);
          self->abandon(1);
        },
        ms);
  }
}

void Runtime::Impl::note_dead_letter(Node& node, std::string_view reason) {
  node.metrics.events_dead_lettered.add();
  // The first few reasons go to the log; after that only every 10000th, so a flood of bad
  // input cannot flood the log.
  std::uint64_t n = ++node.dead_letter_logs;
  if (n <= 5 || n % 10000 == 0) {
    log::warn(node.config->name, "dead-lettered an event ({} so far): {}", n, reason);
  }
}

bool Runtime::Impl::dead_letter_event(Node& node, const Event& event, std::string_view reason) {
  note_dead_letter(node, reason);
  if (route_dead_letter(node, &event, {}, 0, reason)) return true;
  if (dead_letters_.write_event(node.config->name, node.config->type, event, reason)) {
    if (node.current_acks) node.queued_dead_letters = true;  // pump() holds the batch's acknowledgements
    return true;
  }
  dead_letter_failed(node, reason);
  return false;
}

bool Runtime::Impl::dead_letter_raw(Node& node, std::string_view raw, std::uint64_t line, std::string_view reason) {
  note_dead_letter(node, line > 0 ? fmt::format("line {}: {}", line, reason) : std::string(reason));
  if (route_dead_letter(node, nullptr, raw, line, reason)) return true;
  if (dead_letters_.write_raw(node.config->name, node.config->type, raw, line, reason)) {
    if (node.current_acks) node.queued_dead_letters = true;  // pump() holds the batch's acknowledgements
    return true;
  }
  dead_letter_failed(node, reason);
  return false;
}

// The dead-letter file is written off the loop: an acknowledgement that covers a queued
// dead letter is held (copies of its references) until the letter is in the file, and
// fails if it could not be written. A dead letter counts as delivered only once it is safe.
void Runtime::Impl::hold_until_dead_letters_written(Node& node, const std::vector<AckRef>& acks) {
  if (acks.empty() || !dead_letters_.pending()) return;
  dead_letters_.after_written([node = &node, held = acks](bool written) {
    if (!written) {
      node->metrics.errors.add();
      node->metrics.dead_letters_unwritten.add();
      for (const AckRef& ack : held) ack->fail("a dead letter could not be written");
    }
  });
}

// `NAME.dead_letter` (every component's last output) read by a sink: the dead letter is an
// event there, carrying the acknowledgements of the batch it came from, so the source waits
// for it to be delivered like any other event.
bool Runtime::Impl::route_dead_letter(Node& node, const Event* event, std::string_view raw, std::uint64_t line,
                                      std::string_view reason) {
  if (node.consumers.empty() || node.consumers.back().empty()) return false;
  BatchPtr batch = EventBatch::create();
  Arena& arena = batch->arena();
  Event& letter = batch->add_event(8);
  ByteBuffer timestamp;
  format_iso8601_ms(clock_->now(), timestamp);
  letter.fields.append_member(arena, "timestamp", Value::string(arena, timestamp.view()));
  letter.fields.append_member(arena, "component", Value::string(arena, node.config->name));
  letter.fields.append_member(arena, "component_type", Value::string(arena, node.config->type));
  letter.fields.append_member(arena, "reason", Value::string(arena, reason));
  if (event) {
    letter.fields.append_member(arena, "event", deep_copy(event->fields, arena));
    if (!event->metadata.is_null()) letter.fields.append_member(arena, "metadata", deep_copy(event->metadata, arena));
  } else {
    if (line > 0) letter.fields.append_member(arena, "line", Value::integer(static_cast<std::int64_t>(line)));
    letter.fields.append_member(arena, "raw", Value::string(arena, valid_utf8(raw, arena)));
  }
  batch->set_byte_size(raw.size() + reason.size() + 64);
  if (node.current_acks) {
    for (const AckRef& ack : *node.current_acks) batch->add_ack(ack);
  }
  auto& consumers = node.consumers.back();
  for (std::size_t i = 0; i + 1 < consumers.size(); ++i) enqueue(*consumers[i], batch->clone());
  enqueue(*consumers.back(), std::move(batch));
  return true;
}

// A dead letter that could not be written is not delivered: the batch it came from fails.
void Runtime::Impl::dead_letter_failed(Node& node, std::string_view reason) {
  node.metrics.errors.add();
  node.metrics.dead_letters_unwritten.add();
  std::string why = fmt::format("a dead letter could not be written ({})", reason);
  if (node.current_acks) {
    for (const AckRef& ack : *node.current_acks) ack->fail(why);
  } else if (node.kind() == ComponentKind::Source) {
    node.dead_letter_failure = std::move(why);
  }
}

int Runtime::Impl::run() {
  if (!loop_ready_) {
    log::error("weir", "cannot create the event loop");
    return 1;
  }
  started_at_ = std::chrono::steady_clock::now();
  tune_memory();
  if (uv_idle_init(&loop_, idle_.get()) == 0) {
    idle_.mark_initialized();
    idle_.get()->data = this;
  }
  if (options_.handle_signals) {
    // SIGHUP reloads (never ends the process: what logrotate's postrotate and
    // `systemctl reload` send must not lose a running pipeline).
    for (auto [handle, signum] :
         {std::pair{&sigint_, SIGINT}, std::pair{&sigterm_, SIGTERM}, std::pair{&sighup_, SIGHUP}}) {
      if (uv_signal_init(&loop_, handle->get()) != 0) continue;
      handle->mark_initialized();
      handle->get()->data = this;
      uv_signal_start(
          handle->get(), [](uv_signal_t* h, int s) { static_cast<Impl*>(h->data)->on_signal(s); }, signum);
      uv_unref(handle->base());
    }
  }

  bool start_failed = false;
  auto start = [&](Node& node, auto&& call) {
    Status status = call();
    if (!status.ok()) {
      log::error(node.config->name, "failed to start: {}", status.error().to_string());
      node.metrics.errors.add();
      start_failed = true;
      return;
    }
    node.started = true;
  };
  if (Status owners = find_partition_owners(); !owners.ok()) {
    log::error("weir", "failed to start: {}", owners.error().to_string());
    start_failed = true;
  }
  for (auto& node : nodes_) {
    if (node->kind() != ComponentKind::Transform) continue;
    if (Status loaded = load_transform_state(*node); !loaded.ok()) {
      log::error(node->config->name, "failed to start: {}", loaded.error().to_string());
      node->metrics.errors.add();
      start_failed = true;
    }
  }
  for (auto& node : nodes_) {
    if (node->kind() != ComponentKind::Sink) continue;
    ++sinks_open_;
    start(*node, [&] { return start_sink(*node); });
  }
  for (auto& node : nodes_) {
    if (node->kind() == ComponentKind::Transform && !start_failed) {
      start(*node, [&] { return start_transform(*node); });
    }
  }
  if (!start_failed) form_chains();
  for (auto& node : nodes_) {
    if (node->kind() == ComponentKind::Source && !start_failed) {
      start(*node, [&] { return node->graph_node->source->start(*node->context); });
    }
  }
  if (!start_failed && !graph_.config.api_address.empty()) {
    Status api = start_api();
    if (!api.ok()) {
      log::error("weir", "api: {}", api.error().message());
      start_failed = true;
    }
  }
  if (!start_failed) {
    if (Status apis = start_apis(graph_); !apis.ok()) {
      log::error("weir", "failed to start: {}", apis.error().message());
      start_failed = true;
    }
  }
  if (start_failed) {
    exit_code_ = 1;
    // Sinks and transforms that did start still drain what sources already sent; the
    // ones that did not are taken as done.
    for (auto& node : nodes_) {
      if (node->started) continue;
      if (node->kind() == ComponentKind::Sink) {
        node->finished = true;
        sink_done(*node);
      } else if (node->kind() == ComponentKind::Transform) {
        node->started = true;
      }
    }
    shutdown();
  } else {
    if (options_.watch_config) start_config_watch();
    log::info("weir", "running {} component(s) from {}", nodes_.size(),
              graph_.config.files.empty() ? std::string("<none>") : graph_.config.files.front());
  }
  // A weir of APIs alone runs until it is stopped.
  if (sinks_open_ == 0 && (apis_.empty() || stopping_)) complete();
  for (auto& node : nodes_) {
    if (node->kind() != ComponentKind::Source) schedule(*node);
  }

  if (!completed_) uv_run(&loop_, UV_RUN_DEFAULT);
  trim_timer_.close();
  if (!completed_) {
    // The loop ran dry while sinks were still open: a component lost track of a handle.
    log::error("weir", "event loop stopped before every sink drained");
    exit_code_ = 1;
  }
  dead_letters_.flush();  // the summary counts what is in the file
  if (options_.print_summary) print_summary();
  return exit_code_;
}

void Runtime::Impl::print_summary() {
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  log::info("weir", "stopped after {:.3f}s", seconds);
  for (auto& node : nodes_) {
    const ComponentMetrics& m = node->metrics;
    std::string extra;
    if (m.events_dead_lettered.get()) extra += fmt::format(", {} dead-lettered", m.events_dead_lettered.get());
    if (m.events_dropped.get()) extra += fmt::format(", {} dropped", m.events_dropped.get());
    if (m.errors.get()) extra += fmt::format(", {} errors", m.errors.get());
    log::info(node->config->name, "{} events in ({}), {} events out{}", m.events_received.get(),
              human_bytes(m.bytes_received.get()), m.events_sent.get(), extra);
  }
  if (dead_letters_.written()) {
    log::warn("weir", "{} dead letter(s) written to {}", dead_letters_.written(), dead_letters_.path());
  }
}

Runtime::Runtime(topology::Graph& graph, RunOptions options) : impl_(std::make_unique<Impl>(graph, options)) {}
Runtime::~Runtime() = default;
int Runtime::run() { return impl_->run(); }
void Runtime::shutdown() { impl_->shutdown(); }
uv_loop_t* Runtime::loop() { return impl_->loop(); }
bool Runtime::abandoned() const { return impl_->abandoned(); }
const ComponentMetrics& Runtime::metrics(std::size_t node) const { return impl_->metrics(node); }
std::uint64_t Runtime::dead_letters() const { return impl_->dead_letters(); }

}  // namespace weir::runtime
