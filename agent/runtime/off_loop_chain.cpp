// Transforms run where a source decodes (ADR 015). In the CVAT pipeline the file source
// decodes on libuv's pool and the transforms ran on the loop's thread: each batch crossed
// to the other core and the transforms read it cold, at about twice the cost of reading it
// on the core that had just written it. A chain runs the transforms that allow it
// (Transform::runs_off_loop) on the decoding thread instead; the loop only emits what they
// made, in the order the source decoded it.
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "runtime/runtime_impl.hpp"
#include "weir/log.hpp"

namespace weir::runtime {

// A chain member's context while it runs off the loop: what must happen on the loop
// (dead letters, a failed pipeline) is recorded in the run's output and done at its emit.
class FusedChain::StepContext final : public TransformContext {
 public:
  StepContext(FusedChain& chain, std::size_t step, Runtime::Impl::Node& node) : chain_(chain), step_(step), node_(node) {}

  // Only for what the loop's thread may do: an off-loop transform has no handles of its own.
  uv_loop_t* loop() override { return node_.context->loop(); }
  const std::string& name() const override { return node_.config->name; }
  const std::string& type() const override { return node_.config->type; }
  const std::string& data_dir() const override { return node_.context->data_dir(); }
  ComponentMetrics& metrics() override { return node_.metrics; }  // counters are atomic
  const Clock& clock() const override { return node_.context->clock(); }
  Random& random() override { return node_.random; }  // this transform's own, used by one call at a time

  bool dead_letter(const Event& event, std::string_view reason) override {
    Output* out = running("dead_letter");
    if (out == nullptr) return false;
    if (out->letter_events == nullptr) out->letter_events = EventBatch::create();
    Arena& arena = out->letter_events->arena();
    out->letter_events->events().push_back(
        Event{deep_copy(event.fields, arena), event.metadata.is_null() ? Value::null() : deep_copy(event.metadata, arena)});
    out->letters.push_back({step_, std::string(reason), out->letter_events->size() - 1, {}, 0});
    return true;  // whether it is written is known on the loop, which then fails the acks
  }
  bool dead_letter_raw(std::string_view raw, std::uint64_t line, std::string_view reason) override {
    Output* out = running("dead_letter_raw");
    if (out == nullptr) return false;
    out->letters.push_back({step_, std::string(reason), std::nullopt, std::string(raw), line});
    return true;
  }
  // The loop holds the output's acknowledgements for its letters itself (emit_processed).
  void hold_until_dead_letters_written(std::vector<AckRef> /*acks*/) override {}
  void fail_pipeline(std::string_view reason) override {
    if (Output* out = running("fail_pipeline")) out->failures.emplace_back(step_, std::string(reason));
  }
  void emit(BatchPtr batch, std::size_t output) override { chain_.emitted(step_, output, std::move(batch)); }

 private:
  // The run in progress; none means the transform called from outside process(), which an
  // off-loop transform must not do (it has no callbacks of its own): a bug, counted.
  Output* running(std::string_view call) {
    if (chain_.current_ != nullptr) return chain_.current_;
    node_.metrics.errors.add();
    log::error(node_.config->name, "{} called outside process() by a transform that runs off the loop", call);
    return nullptr;
  }

  FusedChain& chain_;
  std::size_t step_;
  Runtime::Impl::Node& node_;
};

FusedChain::FusedChain(Runtime::Impl::Node& source, std::vector<Runtime::Impl::Node*> nodes,
                       std::optional<std::size_t> stateful)
    : source_(source), nodes_(std::move(nodes)), stateful_(stateful) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) steps_.push_back(std::make_unique<StepContext>(*this, i, *nodes_[i]));
}

FusedChain::~FusedChain() = default;

FusedOutput::~FusedOutput() {
  if (emitted_downstream) return;
  if (auto owner = chain.lock()) owner->dropped(seq);
}

std::size_t FusedChain::step_of(const Runtime::Impl::Node& node) const {
  return static_cast<std::size_t>(std::find(nodes_.begin(), nodes_.end(), &node) - nodes_.begin());
}

// Under mutex_: a new numbered Output for the call about to be made.
std::unique_ptr<FusedOutput> FusedChain::start_call() {
  auto out = std::make_unique<Output>();
  out->chain = weak_from_this();
  out->seq = next_seq_++;
  current_ = out.get();
  return out;
}

// Under mutex_: the stateful member's snapshot when its state asked for one, taken now that
// the member has seen exactly the calls numbered up to this one.
void FusedChain::end_call(Output& out) {
  current_ = nullptr;
  if (stateful_ && snapshot_wanted_.exchange(false, std::memory_order_relaxed)) {
    out.snapshot = nodes_[*stateful_]->graph_node->transform->try_snapshot();
  }
}

ChainOutputPtr FusedChain::run(BatchPtr& batch) {
  std::lock_guard lock(mutex_);
  if (!open_.load(std::memory_order_relaxed)) return nullptr;
  std::unique_ptr<Output> out = start_call();
  out->decoded_events = batch->size();
  out->decoded_bytes = batch->byte_size();
  feed(0, std::move(batch));
  end_call(*out);
  return out;
}

std::unique_ptr<FusedOutput> FusedChain::run_work(std::size_t step, const Work& work) {
  std::lock_guard lock(mutex_);
  if (!open_.load(std::memory_order_relaxed)) return nullptr;
  std::unique_ptr<Output> out = start_call();
  work(*steps_[step]);
  end_call(*out);
  return out;
}

std::optional<std::string> FusedChain::snapshot_on_loop() {
  if (!stateful_ || poisoned()) return std::nullopt;
  std::lock_guard lock(mutex_);
  if (emit_seq_ != next_seq_) {
    // Calls whose batches are not numbered yet are in the state: the next call takes it.
    snapshot_wanted_.store(true, std::memory_order_relaxed);
    return std::nullopt;
  }
  return nodes_[*stateful_]->graph_node->transform->try_snapshot();
}

void FusedChain::close() {
  std::lock_guard lock(mutex_);  // waits for a call in progress
  open_.store(false, std::memory_order_relaxed);
}

void FusedChain::park(std::unique_ptr<Output> output) {
  std::uint64_t seq = output->seq;
  parked_.emplace(seq, std::move(output));
}

std::unique_ptr<FusedOutput> FusedChain::next_in_order() {
  while (true) {
    auto next = parked_.find(emit_seq_);
    if (next != parked_.end()) {
      std::unique_ptr<Output> out = std::move(next->second);
      parked_.erase(next);
      ++emit_seq_;
      return out;
    }
    std::lock_guard lock(dropped_mutex_);
    if (dropped_.erase(emit_seq_) == 0) return nullptr;
    ++emit_seq_;  // never coming: the ones after it go on
  }
}

std::vector<std::unique_ptr<FusedOutput>> FusedChain::abandon_missing() {
  std::vector<std::unique_ptr<Output>> arrived;
  for (auto& [seq, out] : parked_) arrived.push_back(std::move(out));
  parked_.clear();
  std::lock_guard lock(mutex_);
  emit_seq_ = next_seq_;
  return arrived;
}

bool FusedChain::abandoned(const Output& output) const { return output.seq < emit_seq_; }

bool FusedChain::settled() {
  std::unique_lock lock(mutex_, std::try_to_lock);  // a call in progress: not settled
  return lock.owns_lock() && emit_seq_ == next_seq_;
}

void FusedChain::dropped(std::uint64_t seq) {
  {
    std::lock_guard lock(dropped_mutex_);
    dropped_.insert(seq);
  }
  if (stateful_) poison("a batch it processed off the loop was never emitted");
}

void FusedChain::poison(std::string_view why) {
  if (!stateful_ || poisoned_.exchange(true)) return;
  log::warn(nodes_[*stateful_]->config->name,
            "{}: its state is no longer saved until the next start, so the saved state keeps matching what the "
            "sources were told (they send the rest again)", why);
}

void FusedChain::feed(std::size_t step, BatchPtr batch) {
  Runtime::Impl::Node& node = *nodes_[step];
  node.metrics.events_received.add(batch->size());
  node.metrics.bytes_received.add(batch->byte_size());
  node.graph_node->transform->process(std::move(batch), *steps_[step]);
}

// A member emitted: into the next member at once, or kept for the loop (the last member's
// batches, and any other output's).
void FusedChain::emitted(std::size_t step, std::size_t output, BatchPtr batch) {
  if (!batch || batch->empty()) return;
  Runtime::Impl::Node& node = *nodes_[step];
  if (current_ == nullptr) {
    node.metrics.errors.add();
    node.metrics.events_dropped.add(batch->size());
    log::error(node.config->name, "emit called outside process() by a transform that runs off the loop; {} events dropped",
               batch->size());
    return;
  }
  if (output == 0 && step + 1 < nodes_.size()) {
    node.metrics.events_sent.add(batch->size());
    node.metrics.bytes_sent.add(batch->byte_size());
    return feed(step + 1, std::move(batch));
  }
  current_->emitted.push_back({step, output, std::move(batch)});
}

// At start, before any source runs: for each source, the longest line of transforms after
// its first output that may run off the loop. A member takes its input from the one before
// only (so nothing reaches it on the loop while the chain is open); one member at most keeps
// state (one numbering of batches per chain: ADR 015). Off in lockstep (replay, tests: the
// pipeline's order is the loop's there) and with WEIR_OFF_LOOP_CHAINS=off.
void Runtime::Impl::form_chains() {
  if (options_.lockstep) return;
  if (const char* setting = std::getenv("WEIR_OFF_LOOP_CHAINS"); setting != nullptr && std::strcmp(setting, "off") == 0) {
    log::info("weir", "WEIR_OFF_LOOP_CHAINS=off: every transform runs on the loop");
    return;
  }
  for (auto& source : nodes_) {
    if (source->kind() != ComponentKind::Source || source->consumers.empty() || source->consumers[0].size() != 1) continue;
    std::vector<Node*> members;
    std::optional<std::size_t> stateful;
    Node* next = source->consumers[0][0];
    while (next->kind() == ComponentKind::Transform && next->started && next->in_chain == nullptr &&
           next->graph_node->inputs.size() == 1 && next->graph_node->transform->runs_off_loop() &&
           !next->partition_states && !(next->state && stateful)) {
      if (next->state) stateful = members.size();
      members.push_back(next);
      if (next->consumers.empty() || next->consumers[0].size() != 1) break;
      next = next->consumers[0][0];
    }
    if (members.empty()) continue;
    auto chain = std::make_shared<FusedChain>(*source, members, stateful);
    source->chain = chain;
    std::string names;
    for (Node* member : members) {
      member->in_chain = chain.get();
      names += (names.empty() ? "" : " -> ") + member->config->name;
    }
    if (stateful) {
      // Its snapshots: taken by the chain, where and when they match the numbering.
      members[*stateful]->state->take_snapshot = [chain] { return chain->snapshot_on_loop(); };
    }
    log::debug(source->config->name, "runs {} where it decodes", names);
  }
}

void Runtime::Impl::close_chain(Node& source, std::string_view why) {
  if (!source.chain || !source.chain->is_open()) return;
  source.chain->close();
  log::debug(source.config->name, "its transforms run on the loop from now on ({})", why);
  if (source.chain->settled()) release_members(*source.chain);  // else once what is on its way is emitted
}

void Runtime::Impl::close_chains(std::string_view why) {
  for (auto& node : nodes_) close_chain(*node, why);
}

std::shared_ptr<OffLoopChain> NodeContext::off_loop_chain() {
  if (!node_.chain || !node_.chain->is_open()) return nullptr;
  return node_.chain;
}

// On the loop, what a chain made of one of the source's batches: the source's side now (as
// emit_from(source) does it), the rest in the order of the chain's calls.
bool Runtime::Impl::emit_processed(Node& source, ChainOutputPtr processed) {
  std::unique_ptr<FusedOutput> out(static_cast<FusedOutput*>(processed.release()));
  FusedChain& chain = *source.chain;
  source_emitting(source, out->acks, out->decoded_events, out->decoded_bytes);
  source.metrics.events_sent.add(out->decoded_events);
  source.metrics.bytes_sent.add(out->decoded_bytes);
  if (chain.abandoned(*out)) {
    emit_chain_output(chain, *out);  // past a gap that will not fill: in arrival order
  } else {
    chain.park(std::move(out));
    emit_in_order(chain);
  }
  return chain_has_room(source);
}

void Runtime::Impl::emit_in_order(FusedChain& chain) {
  while (std::unique_ptr<FusedOutput> next = chain.next_in_order()) emit_chain_output(chain, *next);
  if (!chain.is_open() && chain.settled()) release_members(chain);
}

// A closed chain with every call emitted: its members are plain transforms on the loop from
// now on (no chain to ask before each pump), their own work that waited runs, and their
// inputs move.
void Runtime::Impl::release_members(FusedChain& chain) {
  std::vector<std::pair<std::size_t, FusedChain::Work>> waiting;
  waiting.swap(chain.deferred);
  for (auto& [step, work] : waiting) work(*chain.nodes()[step]->context);
  for (Node* member : chain.nodes()) {
    if (member->in_chain != &chain) continue;  // released already
    member->in_chain = nullptr;
    schedule(*member);
  }
}

// What pump() of each member would have done with the batch, in the same order: a stateful
// member's numbering of it (its acknowledgement in place of the source's), dead letters,
// emits, and its snapshot.
void Runtime::Impl::emit_chain_output(FusedChain& chain, FusedOutput& out) {
  out.emitted_downstream = true;
  const std::vector<Node*>& members = chain.nodes();
  Node* stateful = chain.stateful_step() ? members[*chain.stateful_step()] : nullptr;
  std::vector<AckRef> acks = std::move(out.acks);
  if (stateful != nullptr) acks = {stateful->state->hold(std::move(acks))};
  // As in pump(), with the batch's acknowledgements: a letter carries (or, unwritten, fails)
  // them, and a batch numbered above is not one of the member's own (emit_from).
  for (const FusedOutput::Letter& letter : out.letters) {
    Node& node = *members[letter.step];
    with_batch_acks(node, acks, [&] {
      if (letter.event) {
        dead_letter_event(node, out.letter_events->events()[*letter.event], letter.reason);
      } else {
        dead_letter_raw(node, letter.raw, letter.line, letter.reason);
      }
    });
  }
  for (const auto& [step, reason] : out.failures) members[step]->context->fail_pipeline(reason);
  for (FusedOutput::Emitted& made : out.emitted) {
    for (const AckRef& ack : acks) made.batch->add_ack(ack);
    Node& node = *members[made.step];
    with_batch_acks(node, acks, [&] { emit_from(node, std::move(made.batch), made.output); });
  }
  if (stateful != nullptr && !chain.poisoned()) {
    if (out.snapshot) {
      stateful->state->snapshot_taken(std::move(*out.snapshot));
    } else {
      stateful->state->processed();
    }
  }
}

// TransformContext::run_exclusive for a member: a call of the chain while it is open; once
// it is closed, at once when settled, else when the calls still on their way are emitted.
void Runtime::Impl::run_exclusive(Node& node, const std::function<void(TransformContext&)>& work) {
  FusedChain* chain = node.in_chain;
  if (chain == nullptr) return work(*node.context);
  std::size_t step = chain->step_of(node);
  if (std::unique_ptr<FusedOutput> out = chain->run_work(step, work)) {
    chain->park(std::move(out));
    return emit_in_order(*chain);
  }
  if (chain->settled()) return work(*node.context);
  chain->deferred.emplace_back(step, work);
}

// Room downstream of a chain (its members' consumers outside it): the source waits on each
// that is full, and is resumed by it (wake_upstream).
bool Runtime::Impl::chain_has_room(Node& source) {
  bool room = true;
  for (Node* member : source.chain->nodes()) {
    for (auto& port : member->consumers) {
      for (Node* consumer : port) {
        if (consumer->in_chain == source.chain.get() || consumer->drop_newest || !consumer->input->full()) continue;
        room = false;
        auto& waiting = consumer->waiting_upstream;
        if (std::find(waiting.begin(), waiting.end(), &source) == waiting.end()) waiting.push_back(&source);
      }
    }
  }
  return room;
}

}  // namespace weir::runtime
