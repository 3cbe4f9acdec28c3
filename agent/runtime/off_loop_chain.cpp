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

FusedChain::FusedChain(Runtime::Impl::Node& source, std::vector<Runtime::Impl::Node*> nodes)
    : source_(source), nodes_(std::move(nodes)) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) steps_.push_back(std::make_unique<StepContext>(*this, i, *nodes_[i]));
}

FusedChain::~FusedChain() = default;

ChainOutputPtr FusedChain::run(BatchPtr& batch) {
  std::lock_guard lock(mutex_);
  if (!open_.load(std::memory_order_relaxed)) return nullptr;
  auto out = std::make_unique<Output>();
  out->decoded_events = batch->size();
  out->decoded_bytes = batch->byte_size();
  current_ = out.get();
  feed(0, std::move(batch));
  current_ = nullptr;
  return out;
}

void FusedChain::close() {
  std::lock_guard lock(mutex_);  // waits for a run in progress
  open_.store(false, std::memory_order_relaxed);
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
// only (so nothing reaches it on the loop while the chain is open) and keeps no state (its
// snapshots are taken on the loop between batches). Off in lockstep (replay, tests: the
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
    Node* next = source->consumers[0][0];
    while (next->kind() == ComponentKind::Transform && next->started && next->in_chain == nullptr &&
           next->graph_node->inputs.size() == 1 && !next->graph_node->transform->keeps_state() &&
           next->graph_node->transform->runs_off_loop()) {
      members.push_back(next);
      if (next->consumers.empty() || next->consumers[0].size() != 1) break;
      next = next->consumers[0][0];
    }
    if (members.empty()) continue;
    source->chain = std::make_shared<FusedChain>(*source, members);
    std::string names;
    for (Node* member : members) {
      member->in_chain = source->chain.get();
      names += (names.empty() ? "" : " -> ") + member->config->name;
    }
    log::debug(source->config->name, "runs {} where it decodes", names);
  }
}

void Runtime::Impl::close_chain(Node& source, std::string_view why) {
  if (!source.chain || !source.chain->is_open()) return;
  source.chain->close();
  log::debug(source.config->name, "its transforms run on the loop from now on ({})", why);
}

void Runtime::Impl::close_chains(std::string_view why) {
  for (auto& node : nodes_) close_chain(*node, why);
}

std::shared_ptr<OffLoopChain> NodeContext::off_loop_chain() {
  if (!node_.chain || !node_.chain->is_open()) return nullptr;
  return node_.chain;
}

// On the loop, what a chain made of one of the source's batches: what emit_from(source)
// and then pump() of each member would have done with it, in the same order.
bool Runtime::Impl::emit_processed(Node& source, ChainOutputPtr processed) {
  auto* out = static_cast<FusedChain::Output*>(processed.get());
  FusedChain& chain = *source.chain;
  if (!source.dead_letter_failure.empty()) {
    for (const AckRef& ack : out->acks) ack->fail(source.dead_letter_failure);
    source.dead_letter_failure.clear();
  }
  hold_until_dead_letters_written(source, out->acks);
  source.metrics.events_received.add(out->decoded_events);
  source.metrics.bytes_received.add(out->decoded_bytes);
  source.metrics.events_sent.add(out->decoded_events);
  source.metrics.bytes_sent.add(out->decoded_bytes);
  const std::vector<Node*>& members = chain.nodes();
  for (const FusedChain::Output::Letter& letter : out->letters) {
    Node& node = *members[letter.step];
    node.current_acks = &out->acks;  // a letter carries (or, unwritten, fails) the batch's acks
    if (letter.event) {
      dead_letter_event(node, out->letter_events->events()[*letter.event], letter.reason);
    } else {
      dead_letter_raw(node, letter.raw, letter.line, letter.reason);
    }
    node.current_acks = nullptr;
    if (node.queued_dead_letters) {
      node.queued_dead_letters = false;
      hold_until_dead_letters_written(node, out->acks);
    }
  }
  for (const auto& [step, reason] : out->failures) members[step]->context->fail_pipeline(reason);
  for (FusedChain::Output::Emitted& made : out->emitted) {
    for (const AckRef& ack : out->acks) made.batch->add_ack(ack);
    emit_from(*members[made.step], std::move(made.batch), made.output);
  }
  return chain_has_room(source);
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
