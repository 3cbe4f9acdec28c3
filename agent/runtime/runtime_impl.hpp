// The runtime's insides, shared by its parts (each a file a newcomer can read alone):
//   runtime.cpp  channels and scheduling: moving batches, backpressure, start, drain
//   reload.cpp   signals and reload (SIGHUP, --watch-config, POST /reload)
//   api.cpp      the API server: /health, /metrics, /reload
//   memory.cpp   the process's allocator policy
// Internal to the agent: no component includes this.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <set>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "buffer/channel.hpp"
#include "runtime/dead_letter.hpp"
#include "runtime/partition_states.hpp"
#include "runtime/runtime.hpp"
#include "runtime/transform_state.hpp"
#include "weir/component.hpp"
#include "weir/http.hpp"
#include "weir/uv.hpp"

namespace weir::runtime {

std::string human_bytes(std::uint64_t bytes);

// What a reload did, as logged and as POST /reload answers it.
struct ReloadOutcome {
  std::string status;  // reloaded | unchanged | failed
  std::uint64_t generation = 1;       // the config generation running after it
  std::vector<std::string> rebuilt;   // components replaced
  std::vector<std::string> errors;    // why it failed (file:line:col: ... for invalid configs)
  std::string to_json() const;
};
using ReloadDone = std::function<void(const ReloadOutcome&)>;

// `GET /tap`: a sample of the events leaving some components' outputs for one interval.
// The pipeline never waits for it: the first `limit` events of the interval are copied as
// JSON, the rest only counted.
struct Tap {
  std::size_t limit = 100;
  std::uint64_t seen = 0;
  std::size_t sampled = 0;
  ByteBuffer events;  // NDJSON
  void offer(const EventBatch& batch);
};

class FusedChain;
struct FusedOutput;

class Runtime::Impl {
 public:
  Impl(topology::Graph& graph, RunOptions options);
  ~Impl();

  int run();
  void shutdown();
  uv_loop_t* loop() { return &loop_; }
  const ComponentMetrics& metrics(std::size_t node) const;
  std::uint64_t dead_letters() const { return dead_letters_.written(); }
  bool abandoned() const { return abandoned_; }

 private:
  friend class NodeContext;
  friend class FusedChain;
  struct Node;
  struct Retired;

  void schedule(Node& node);
  void on_idle();
  void pump(Node& node);
  BatchPtr pop(Node& node);
  void wake_upstream(Node& node);
  bool has_room(Node& producer);
  void enqueue(Node& consumer, BatchPtr batch);
  void emit_from(Node& producer, BatchPtr batch, std::size_t output);
  void source_emitting(Node& source, const std::vector<AckRef>& acks, std::uint64_t events, std::uint64_t bytes);
  template <typename Call>
  void with_batch_acks(Node& node, const std::vector<AckRef>& acks, Call&& call);
  bool source_has_room(Node& source);
  bool quiescent() const;
  void release_lockstep();
  void source_finished(Node& node);
  void close_outputs(Node& node);
  void maybe_finish(Node& node);
  void sink_done(Node& node);
  void complete();
  void complete_when_states_idle();
  void abandon(int exit_code);
  void on_signal(int signum);
  bool dead_letter_event(Node& node, const Event& event, std::string_view reason);
  bool dead_letter_raw(Node& node, std::string_view raw, std::uint64_t line, std::string_view reason);
  void hold_until_dead_letters_written(Node& node, const std::vector<AckRef>& acks);
  bool route_dead_letter(Node& node, const Event* event, std::string_view raw, std::uint64_t line, std::string_view reason);
  void dead_letter_failed(Node& node, std::string_view reason);
  void note_dead_letter(Node& node, std::string_view reason);
  static buffer::ChannelLimits channel_limits(const config::ComponentConfig& config);
  Status open_disk_buffer(Node& node);
  void watch_channel(Node& node);
  void update_buffer_gauges(Node& node);
  Status load_transform_state(Node& node);
  // Which transform keeps its state per partition of each partitioned source (ADR 017).
  Status find_partition_owners();
  static std::vector<Node*> downstream_of(Node& from);
  Status restore_transform_state(Node& node);
  Status start_sink(Node& node);
  Status start_transform(Node& node);
  void take_snapshot(Node& node, bool now);
  // Transforms run where a source decodes (off_loop_chain.cpp, ADR 015).
  void form_chains();
  void close_chain(Node& source, std::string_view why);
  void close_chains(std::string_view why);
  bool emit_processed(Node& source, ChainOutputPtr output);
  void emit_in_order(FusedChain& chain);
  void emit_chain_output(FusedChain& chain, FusedOutput& out);
  void release_members(FusedChain& chain);
  void run_exclusive(Node& node, const std::function<void(TransformContext&)>& work);
  bool chain_has_room(Node& source);
  void print_summary();
  void tune_memory();
  void trim_if_idle();
  Status start_api();
  void serve_api(http::Request& request, http::Responder responder);
  void serve_tap(http::Request& request, http::Responder responder);
  struct TapRequest;
  std::vector<std::unique_ptr<TapRequest>> taps_;  // answered when their interval ends
  std::string health_json() const;
  std::string graph_json() const;
  std::string metrics_text() const;
  // APIs (apis.cpp).
  struct ApiSlot;
  friend class ApiNodeContext;
  Status start_apis(topology::Graph& graph);  // the graph's apis (graph_'s, or a reload's)
  bool route_to_api(http::Request& request, http::Responder& responder);  // false: no API claims the path
  void stop_apis();
  std::vector<std::unique_ptr<ApiSlot>> apis_;
  std::vector<std::unique_ptr<ApiSlot>> retired_apis_;  // replaced by a reload: stopped, kept until the end

  std::unique_ptr<Node> make_node(topology::Node& graph_node, const config::ComponentConfig& config, std::size_t index);

  struct ReloadPlan;
  void request_reload(std::string trigger, ReloadDone done);
  Result<ReloadPlan> plan_reload(topology::Graph& fresh);
  void begin_reload(const std::string& trigger);
  Status start_added(ReloadPlan& plan, topology::Graph& fresh);
  void rewire(const ReloadPlan& plan, const topology::Graph& fresh);
  void restart_source(Node& node);
  void swap_sink(Node& node);
  Retired& retire_instance(Node& node);
  void install_next(Node& node);
  void apply_memory_limits(Node& node);
  void complete_reload();
  void finish_reload(ReloadOutcome outcome);
  void start_config_watch();
  std::string config_files_signature() const;

  topology::Graph& graph_;
  RunOptions options_;
  uv_loop_t loop_{};
  bool loop_ready_ = false;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Node*> ready_;
  UvIdle idle_;
  UvSignal sigint_;
  UvSignal sigterm_;
  UvSignal sighup_;
  UvTimer deadline_;
  UvTimer trim_timer_;
  std::uint64_t events_at_last_trim_check_ = 0;
  bool trimmed_ = false;
  std::unique_ptr<http::Server> api_;
  DeadLetterFile dead_letters_;
  // How far each stateful transform's saved state reaches, for the disk buffers downstream.
  std::shared_ptr<buffer::StateCoverage> coverage_ = std::make_shared<buffer::StateCoverage>();
  std::shared_ptr<Clock> clock_;
  std::uint64_t seed_ = 0;
  std::vector<Node*> lockstep_waiting_;  // sources that emitted and wait for the pipeline to empty
  std::size_t sinks_open_ = 0;
  bool stopping_ = false;
  bool completed_ = false;
  bool abandoned_ = false;
  int exit_code_ = 0;
  std::chrono::steady_clock::time_point started_at_;

  // Reload (reload.cpp).
  std::uint64_t generation_ = 1;
  std::uint64_t reloads_ = 0, reload_failures_ = 0;
  bool reloading_ = false;
  bool reload_again_ = false;
  std::size_t reload_swaps_pending_ = 0;
  ReloadOutcome pending_outcome_;
  std::vector<ReloadDone> reload_waiters_;
  std::vector<std::unique_ptr<topology::Graph>> reloaded_graphs_;  // the configs nodes point into
  std::deque<Retired> retired_;  // replaced components, kept until exit (batches may hold their memory); a deque: references to it stay valid
  UvTimer watch_timer_;
  std::string config_signature_;
  bool config_changed_ = false;
};

struct Runtime::Impl::ApiSlot {
  const config::ComponentConfig* config = nullptr;
  Api* api = nullptr;  // owned by the graph
  std::unique_ptr<ApiContext> context;
  std::unique_ptr<http::Server> server;  // its own, when it has an `address`
  std::string served_address;
  ComponentMetrics metrics;
  Random random;
  bool started = false;
  bool stopped = false;    // asked to stop
  bool stop_done = false;  // ... and done (its work off the loop has ended)
};

// One context per component: the only door a component has into the engine.
class NodeContext final : public SourceContext, public TransformContext, public SinkContext {
 public:
  NodeContext(Runtime::Impl& rt, Runtime::Impl::Node& node) : rt_(rt), node_(node) {}

  uv_loop_t* loop() override { return rt_.loop(); }
  const std::string& name() const override;
  const std::string& type() const override;
  const std::string& data_dir() const override { return rt_.graph_.config.data_dir; }
  ComponentMetrics& metrics() override;
  const Clock& clock() const override { return *rt_.clock_; }
  Random& random() override;
  bool dead_letter(const Event& event, std::string_view reason) override { return rt_.dead_letter_event(node_, event, reason); }
  bool dead_letter_raw(std::string_view raw, std::uint64_t line, std::string_view reason) override {
    return rt_.dead_letter_raw(node_, raw, line, reason);
  }
  void hold_until_dead_letters_written(std::vector<AckRef> acks) override { rt_.hold_until_dead_letters_written(node_, acks); }
  void fail_pipeline(std::string_view reason) override;
  Result<std::optional<std::string>> load_state() override;
  Status save_state(std::string_view state) override;

  bool emit(BatchPtr batch) override;
  bool emit_to(std::size_t output, BatchPtr batch) override;
  std::shared_ptr<OffLoopChain> off_loop_chain() override;
  bool emit_processed(ChainOutputPtr output) override { return rt_.emit_processed(node_, std::move(output)); }
  void run_exclusive(const std::function<void(TransformContext&)>& work) override { rt_.run_exclusive(node_, work); }
  bool output_connected(std::size_t output) const override;
  bool downstream_ready() const override;
  void finished() override { rt_.source_finished(node_); }
  void partition_assigned(const std::string& partition, std::shared_ptr<PartitionStateStore> store,
                          std::function<void(Result<std::optional<std::int64_t>>)> ready) override;
  void partition_revoked(const std::string& partition, bool settled) override;

  void emit(BatchPtr batch, std::size_t output) override { rt_.emit_from(node_, std::move(batch), output); }

  void ready_again() override { rt_.schedule(node_); }

 private:
  Runtime::Impl& rt_;
  Runtime::Impl::Node& node_;
  std::unique_ptr<StateFiles> saved_state_;
  bool saved_state_loaded_ = false;
};

struct Runtime::Impl::Node {
  std::size_t index = 0;
  topology::Node* graph_node = nullptr;
  const config::ComponentConfig* config = nullptr;
  ComponentMetrics metrics;
  Random random;  // seeded from the pipeline's seed and the component's name
  std::unique_ptr<NodeContext> context;

  // Input channel (transforms and sinks): memory, or a sink's disk buffer (opened in run()).
  std::unique_ptr<buffer::Channel> input;
  bool drop_newest = false;
  std::uint64_t drop_logs = 0;
  std::vector<Node*> waiting_upstream;  // producers paused because this buffer is full
  std::size_t open_inputs = 0;          // producers that may still send

  std::vector<std::vector<Node*>> consumers;  // per output

  // A source's chain of the transforms that run where it decodes (while open), and for a
  // transform, the chain it is in until that is closed and settled (off_loop_chain.cpp).
  std::shared_ptr<FusedChain> chain;
  FusedChain* in_chain = nullptr;

  std::shared_ptr<TransformState> state;  // transforms that keep state across restarts
  // A transform that keeps it per partition of the partitioned sources upstream (ADR 017),
  // instead of `state`; for such a source, that transform.
  std::unique_ptr<PartitionStates> partition_states;
  Node* partition_owner = nullptr;
  std::optional<std::string> loaded_state;  // its last snapshot, until the transform has started
  // The acknowledgements of the batch being processed or consumed (dead letters take them),
  // and a dead-letter failure a source met before its next emit.
  const std::vector<AckRef>* current_acks = nullptr;
  bool queued_dead_letters = false;  // to the file, while current_acks was set
  std::string dead_letter_failure;

  std::vector<std::string> outputs;  // as the running instance names them
  std::vector<std::pair<std::size_t, std::shared_ptr<Tap>>> taps;  // (output, tap) of GET /tap requests

  // Reload: a sink being replaced gets no batches while the old instance drains; a source
  // being replaced is stopped and its successor started once it has finished; a removed
  // component gets nothing more and drains.
  bool replacing = false;
  std::unique_ptr<Sink> next_sink;
  std::unique_ptr<Source> next_source;
  std::unique_ptr<NodeContext> next_context;
  const config::ComponentConfig* next_config = nullptr;
  bool removed = false;

  bool scheduled = false;
  bool started = false;
  bool finished = false;  // produces nothing more (sources, transforms) / drain asked (sinks)
  bool done = false;      // sinks: drained
  std::uint64_t dead_letter_logs = 0;

  ComponentKind kind() const { return graph_node->kind; }
  // Nothing more to come from it: a sink drained, a source or transform finished.
  bool drained() const { return kind() == ComponentKind::Sink ? done : finished; }
};

// A line of transforms that run on the thread a source decoded a batch on (ADR 015): the
// batch is still in that core's cache, and it skips two hand-overs through the loop.
//
// Rules that keep it the same pipeline as on the loop:
// - A member is called only under the chain's mutex: by run() (a decoding thread), by
//   run_work() (its own callbacks on the loop: TransformContext::run_exclusive), and for a
//   snapshot. The runtime closes the chain (waiting out a run in progress) before it calls
//   a member the usual way: at a reload, a tap on an inner member, a batch the source emits
//   past the chain, the source's end. A closed chain stays closed.
// - Each call makes an Output, numbered in the order of the calls; the loop emits Outputs in
//   that order (a source that decodes two files delivers them in its own order), so a
//   stateful member's batches are numbered (TransformState::hold) in the order it saw them.
// - A stateful member (at most one per chain) snapshots where it runs, after a call, when its
//   TransformState asked; the snapshot travels in the Output and covers exactly the batches
//   numbered up to it. On the loop it may snapshot only when every call's Output has been
//   emitted ("settled").
// - An Output that is never emitted (a source stopped with reads decoded, not delivered) had
//   its effect on the stateful member's state: from then on no snapshot is saved, so the
//   saved state stays the one that matches what the sources were told (they send the rest
//   again after the restart).
class FusedChain final : public OffLoopChain, public std::enable_shared_from_this<FusedChain> {
 public:
  using Output = FusedOutput;
  using Work = std::function<void(TransformContext&)>;

  FusedChain(Runtime::Impl::Node& source, std::vector<Runtime::Impl::Node*> nodes, std::optional<std::size_t> stateful);
  ~FusedChain() override;
  ChainOutputPtr run(BatchPtr& batch) override;
  // A member's own work on the loop (run_exclusive), as a call of the chain; null when closed.
  std::unique_ptr<Output> run_work(std::size_t step, const Work& work);
  // The stateful member's snapshot on the loop: only when settled; else asked of the next call.
  std::optional<std::string> snapshot_on_loop();
  void close();
  bool is_open() const { return open_.load(std::memory_order_relaxed); }
  Runtime::Impl::Node& source() { return source_; }
  const std::vector<Runtime::Impl::Node*>& nodes() const { return nodes_; }
  std::size_t step_of(const Runtime::Impl::Node& node) const;
  std::optional<std::size_t> stateful_step() const { return stateful_; }

  // The loop's side: Outputs wait here until every earlier one is emitted.
  void park(std::unique_ptr<Output> output);
  bool abandoned(const Output& output) const;  // its place in the order was given up
  std::unique_ptr<Output> next_in_order();  // the next Output to emit, if it has arrived
  bool settled();                           // every call's Output emitted (or dropped)
  bool poisoned() const { return poisoned_.load(std::memory_order_relaxed); }
  void poison(std::string_view why);
  // The source stopped: the Outputs that came, in order, past the ones that never will.
  std::vector<std::unique_ptr<Output>> abandon_missing();
  // Work of a closed chain's member that waits until the chain is settled.
  std::vector<std::pair<std::size_t, Work>> deferred;

 private:
  class StepContext;
  friend struct FusedOutput;
  std::unique_ptr<Output> start_call();
  void end_call(Output& out);
  void feed(std::size_t step, BatchPtr batch);
  void emitted(std::size_t step, std::size_t output, BatchPtr batch);
  void dropped(std::uint64_t seq);

  Runtime::Impl::Node& source_;
  std::vector<Runtime::Impl::Node*> nodes_;
  std::optional<std::size_t> stateful_;
  std::vector<std::unique_ptr<StepContext>> steps_;
  std::mutex mutex_;
  std::atomic<bool> open_{true};  // written under mutex_
  Output* current_ = nullptr;     // the call in progress (under mutex_)
  std::uint64_t next_seq_ = 0;    // calls made (under mutex_)
  std::atomic<bool> snapshot_wanted_{false};
  std::atomic<bool> poisoned_{false};
  // Loop only: the next Output to emit, and those that came early.
  std::uint64_t emit_seq_ = 0;
  std::map<std::uint64_t, std::unique_ptr<Output>> parked_;
  std::mutex dropped_mutex_;
  std::set<std::uint64_t> dropped_;  // never emitted (guarded by dropped_mutex_)
};

// What one call of a chain made (FusedChain::Output).
struct FusedOutput final : ChainOutput {
  ~FusedOutput() override;
  void add_ack(AckRef ack) override { acks.push_back(std::move(ack)); }
  struct Emitted {
    std::size_t step;  // index into nodes()
    std::size_t output;
    BatchPtr batch;
  };
  // A dead letter set aside off the loop: written (or routed) on the loop, with the acks.
  struct Letter {
    std::size_t step;
    std::string reason;
    std::optional<std::size_t> event;  // into `letter_events`; else raw/line
    std::string raw;
    std::uint64_t line = 0;
  };
  std::weak_ptr<FusedChain> chain;
  std::uint64_t seq = 0;
  bool emitted_downstream = false;
  std::vector<Emitted> emitted;  // in the order made
  std::vector<Letter> letters;
  BatchPtr letter_events;  // copies of dead-lettered events (made with the first)
  std::vector<std::pair<std::size_t, std::string>> failures;  // fail_pipeline(reason) by step
  std::optional<std::string> snapshot;  // the stateful member's, taken after this call
  std::vector<AckRef> acks;
  std::uint64_t decoded_events = 0, decoded_bytes = 0;  // of the source's batch
};

// Calls `call` with `acks` as those of the batch being handled, which dead letters take (or
// fail, unwritten); the letters it queued for the file hold them until they are written.
template <typename Call>
void Runtime::Impl::with_batch_acks(Node& node, const std::vector<AckRef>& acks, Call&& call) {
  node.current_acks = &acks;
  call();
  node.current_acks = nullptr;
  if (node.queued_dead_letters) {  // once per batch, after its last dead letter
    node.queued_dead_letters = false;
    hold_until_dead_letters_written(node, acks);
  }
}

struct Runtime::Impl::TapRequest {
  std::shared_ptr<Tap> tap;
  std::vector<Node*> nodes;  // whose taps hold it until the interval ends
  http::Responder responder;
  UvTimer timer;
  Impl* runtime = nullptr;
};

struct Runtime::Impl::Retired {
  std::unique_ptr<NodeContext> context;
  std::unique_ptr<Source> source;
  std::unique_ptr<Transform> transform;
  std::unique_ptr<Sink> sink;
};

// What a valid new config changes, matched to the running components by name.
struct Runtime::Impl::ReloadPlan {
  struct Match {
    Node* node;
    std::size_t fresh;  // index into the new graph's nodes
  };
  std::vector<Match> replaced;    // a transform or sink whose options or type changed: a new instance
  std::vector<Match> restarted;   // a source whose options changed: stopped, then a new instance
  std::vector<Match> kept;        // the same instance (its edges may change)
  std::vector<Node*> removed;     // drain, then stay retired
  std::vector<std::size_t> added; // new components, by fresh index
  std::vector<std::unique_ptr<Node>> added_nodes;  // built and started before anything changes
  std::vector<Match> added_running;                // the same, once moved into the runtime
  bool edges_changed = false;
  bool apis_changed = false;  // any API added, removed or changed: all are started anew
  bool empty() const {
    return replaced.empty() && restarted.empty() && removed.empty() && added.empty() && !edges_changed && !apis_changed;
  }
};

}  // namespace weir::runtime
