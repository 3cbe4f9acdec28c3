// The component interfaces. Built-in and external components implement the same ones and
// reach the engine only through the context they are given at start.
//
// Threading: everything runs on the one libuv loop thread; calls into a component never
// overlap. Batches are moved in and out; a component never sees a single event alone.
// One exception, asked for by the transform itself (Transform::runs_off_loop): its
// process() may be called on the thread a source decoded the batch on (OffLoopChain, ADR
// 015). Calls still never overlap, and each happens-after the one before.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "weir/clock.hpp"
#include "weir/codec.hpp"
#include "weir/event.hpp"
#include "weir/metrics.hpp"
#include "weir/result.hpp"

namespace weir {

// Sources, transforms and sinks make the pipeline's graph; an API (`apis:`) stands beside
// it and answers HTTP requests (docs/adr/019-apis.md).
enum class ComponentKind { Source, Transform, Sink, Api };
std::string_view component_kind_name(ComponentKind kind);

// What every context offers.
class ComponentContext {
 public:
  virtual ~ComponentContext() = default;
  virtual uv_loop_t* loop() = 0;
  virtual const std::string& name() const = 0;   // the component's config key
  virtual const std::string& type() const = 0;   // its `type`
  virtual const std::string& data_dir() const = 0;
  virtual ComponentMetrics& metrics() = 0;
  // The pipeline's clock and this component's random numbers (weir/clock.hpp): the only
  // time and randomness a component may put into what it emits.
  virtual const Clock& clock() const = 0;
  virtual Random& random() = 0;

  // Sets an event aside with a reason: sent to the component's `NAME.dead_letter` output
  // when a sink reads it (as an event {timestamp, component, component_type, reason, event,
  // metadata}), else written to the dead-letter file; counted either way. The event's values
  // are copied. A dead letter counts as delivered for acknowledgements; one that could not be
  // written (full disk) returns false, and the runtime fails the acknowledgement of the batch
  // being processed (or, in a source, of the next batch it emits) so it is sent again.
  virtual bool dead_letter(const Event& event, std::string_view reason) = 0;
  // The same for input that never became an event (an undecodable line, an oversized body):
  // the event carries `raw` and `line` instead.
  virtual bool dead_letter_raw(std::string_view raw, std::uint64_t line, std::string_view reason) = 0;
  // Dead letters reach the file off the loop. One set aside outside process() or consume()
  // (a sink's rows refused in a server's answer) is not yet safe when the call returns: a
  // component that is about to release the acknowledgements of what it dead-lettered hands
  // them here first, and they are held until every dead letter so far is in the file (and
  // failed if one could not be written).
  virtual void hold_until_dead_letters_written(std::vector<AckRef> acks) = 0;

  // A failure the component cannot work around (its output is gone, say): logs the reason
  // and drains the whole pipeline, which then exits non-zero.
  virtual void fail_pipeline(std::string_view reason) = 0;

  // A component's own small state that must survive a restart and that changes rarely (a
  // sink's remembered field types): save_state() writes it with fdatasync, blocking, to
  // <data_dir>/state/<name>.saved.{0,1} (two slots, CRC-checked, a torn save leaves the one
  // before); load_state() returns the last one saved. A transform's state that follows its
  // batches uses Transform::keeps_state() instead.
  virtual Result<std::optional<std::string>> load_state() { return std::optional<std::string>(); }
  virtual Status save_state(std::string_view /*state*/) { return Error("this context keeps no state"); }
};

// What the transforms of an OffLoopChain made of one batch, waiting to be emitted on the loop.
class ChainOutput {
 public:
  virtual ~ChainOutput() = default;
  // The source's acknowledgement: added to every batch and dead letter the chain made of
  // the batch, as it would have been to the batch itself (none made: it fires at emit).
  virtual void add_ack(AckRef ack) = 0;
};
using ChainOutputPtr = std::unique_ptr<ChainOutput>;

// The transforms that follow a source in a line, each of which allows it (runs_off_loop),
// run on the thread that decoded a batch, so the batch is still in that core's cache when
// they read it (ADR 015). The runtime forms a chain at start where the graph allows it:
// the source's first output goes to one transform only, and each next transform takes its
// input from the one before only; at most one of them keeps state.
class OffLoopChain {
 public:
  virtual ~OffLoopChain() = default;
  // Any thread; calls are serialised by the chain. Batches of one stream must come in the
  // order the source emits them. Returns what the chain made of `batch` (which it takes),
  // for SourceContext::emit_processed; or null, leaving `batch` as it was, when the chain
  // is closed (a reload, a tap, the end): then the batch is emitted as usual. Every output
  // must reach emit_processed: one dropped stops the saving of a stateful member's state
  // until the next start (ADR 015).
  virtual ChainOutputPtr run(BatchPtr& batch) = 0;
};

// Where a partitioned source keeps, per partition, the state of the transforms downstream
// that keep theirs per partition (ADR 017), so it moves with the partition: the kafka source
// keeps it in a topic. Called on the loop; `done` is called on the loop, later or at once.
struct PartitionSnapshot {
  std::int64_t next_offset = -1;  // the input offset the state covers up to (excluded)
  std::string state;
};
class PartitionStateStore {
 public:
  virtual ~PartitionStateStore() = default;
  // The last snapshot written for `owner` (a transform's name) and `partition`; none yet: nullopt.
  virtual void read(const std::string& owner, const std::string& partition,
                    std::function<void(Result<std::optional<PartitionSnapshot>>)> done) = 0;
  // Durable once `done` says ok (Kafka: acknowledged by the broker).
  virtual void write(const std::string& owner, const std::string& partition, PartitionSnapshot snapshot,
                     std::function<void(Status)> done) = 0;
  // How often a busy partition's state is snapshotted at most (each snapshot is its whole
  // state): the delay it adds to acknowledgements, against the bytes written.
  virtual std::uint64_t snapshot_interval_ms() const { return 50; }
};

class SourceContext : public ComponentContext {
 public:
  // Hands a batch downstream. Always takes it; returns false when a downstream buffer is
  // now full, in which case the source should stop reading until resume() is called.
  virtual bool emit(BatchPtr batch) = 0;
  // The same to output `output` (index into Source::outputs()); the return value says
  // whether every output still has room, as emit()'s does.
  virtual bool emit_to(std::size_t output, BatchPtr batch) = 0;
  // Whether anything reads from `output`: a source skips building events nobody takes.
  virtual bool output_connected(std::size_t output) const = 0;
  // Room downstream of every output (the runtime resumes the source when there is again).
  virtual bool downstream_ready() const = 0;
  // The source will emit nothing more (EOF, count reached, or stopped).
  virtual void finished() = 0;
  // The transforms this source may run where it decodes (null: none). Asked on the loop;
  // the chain may close at any time after (its run() then answers null).
  virtual std::shared_ptr<OffLoopChain> off_loop_chain() { return nullptr; }
  // Emits on the loop what a chain made of a batch, with the source's acknowledgement added
  // (downstream gets the outputs in the order of the chain's calls). Returns what emit() would.
  virtual bool emit_processed(ChainOutputPtr /*output*/) { return true; }

  // A partitioned source (Source::partitioned) was given `partition`: the state transforms
  // downstream keep for it is read from `store` and restored before the source reads it;
  // `ready` then says where the restored state leaves off (nullopt: no state saved yet, the
  // source starts where its own records say), or an error (the source should not read it).
  virtual void partition_assigned(const std::string& /*partition*/, std::shared_ptr<PartitionStateStore> /*store*/,
                                  std::function<void(Result<std::optional<std::int64_t>>)> ready) {
    ready(std::optional<std::int64_t>());
  }
  // The source let `partition` go, having emitted its last batch of it. `settled`: every such
  // batch was acknowledged (so the state covering them is saved): the transforms forget the
  // partition. Not settled (the source gave up waiting): they forget it as well; the next
  // owner starts from the last state saved and makes the rows since then again.
  virtual void partition_revoked(const std::string& /*partition*/, bool /*settled*/) {}
};

class TransformContext : public ComponentContext {
 public:
  // Sends a batch to output `output` (index into Transform::outputs()).
  virtual void emit(BatchPtr batch, std::size_t output = 0) = 0;
  // A transform that runs off the loop (runs_off_loop) reaches its state from its own
  // callbacks on the loop (a timer, a table swapped in) only through this. `work` runs on the
  // loop, never at the same time as process(), and what it emits through the context it is
  // given goes downstream after what the batches processed before it made (ADR 015): now,
  // or once those are emitted. For a transform on the loop, a plain call.
  virtual void run_exclusive(const std::function<void(TransformContext&)>& work) { work(*this); }
};

class SinkContext : public ComponentContext {
 public:
  // A sink whose ready() went false calls this once it can take batches again.
  virtual void ready_again() = 0;
};

class Source {
 public:
  virtual ~Source() = default;
  // Named outputs, as a transform's: the first is the default one (the component's name
  // alone); others are `name.output` (http_server's `requests`, say).
  virtual std::vector<std::string> outputs() const { return {""}; }
  virtual Status start(SourceContext& ctx) = 0;
  // Downstream buffers have room again after emit() returned false.
  virtual void resume() {}
  // Stop taking input (signal, shutdown). Must lead to ctx.finished(), now or later.
  virtual void stop() = 0;
  // Input in this source's own format (`weir test`'s `raw:`: a request body, a stretch of a
  // file): the events its live input would make of it, and what it would reject. Called
  // without start(), at `now`. False: the source has no format of its own (raw is NDJSON).
  virtual bool decode_raw(std::string_view /*raw*/, EpochNanos /*now*/, EventBatch& /*batch*/,
                          std::vector<DecodeRejection>& /*rejected*/) const {
    return false;
  }
  // Its batches carry a partition (EventBatch::partition), each batch one, and it tells its
  // context which partitions it reads (partition_assigned, partition_revoked): transforms
  // downstream keep their state per partition (ADR 017).
  virtual bool partitioned() const { return false; }
};

class Transform {
 public:
  virtual ~Transform() = default;
  // Named outputs; the first is the default one, referenced by the component name alone.
  // Others are referenced as `name.output`.
  virtual std::vector<std::string> outputs() const { return {""}; }
  virtual Status start(TransformContext& /*ctx*/) { return {}; }
  virtual void process(BatchPtr batch, TransformContext& ctx) = 0;
  // True: process() may run off the loop, on the thread that decoded the batch (ADR 015),
  // never at the same time as another call into this transform. Say so only when process()
  // touches nothing but the batch, the transform's own members and the context's emit,
  // dead_letter, metrics counters, clock and random (the context defers what must happen on
  // the loop), and its own callbacks on the loop (timers) go through ctx.run_exclusive().
  virtual bool runs_off_loop() const { return false; }
  // Every input has ended: emit whatever is held back.
  virtual void flush(TransformContext& /*ctx*/) {}

  // State that must survive a restart (per-user clocks, say). A transform that returns true
  // from keeps_state() is asked for snapshot() between batches and given the last one
  // persisted through restore() once, before its first batch (and on reload, the snapshot
  // of the instance it replaces). Its sources are acknowledged only once a snapshot taken
  // after their batches is on disk, so the state on disk always matches what the sources
  // were told (docs/adr/007-transform-state.md). A snapshot restore() cannot read is an
  // error: logged and counted, and the transform starts empty.
  virtual bool keeps_state() const { return false; }
  virtual std::string snapshot() const { return {}; }
  // The same for a transform whose snapshot can fail (a plugin's): nullopt saves nothing,
  // so the acknowledgements a snapshot would have covered stay held.
  virtual std::optional<std::string> try_snapshot() const { return snapshot(); }
  virtual Status restore(std::string_view /*snapshot*/) { return {}; }

  // State kept apart per partition of a partitioned input (a Kafka topic's partition, named
  // by EventBatch::partition()), so that it can move with the partition to another weir
  // (ADR 017). Downstream of a partitioned source, a transform that keeps_state() and says
  // partitions_state() is asked for snapshot_partition() instead of snapshot(), and the
  // snapshots go where the source keeps them (its PartitionStateStore), with the input offset
  // they cover. Before the source reads a partition it was given, the transform gets that
  // partition's last snapshot (restore_partition, none when there is none yet); once the
  // source let a partition go and its batches are done, drop_partition() forgets it. Its
  // snapshots must follow from its input alone (event time, not the wall clock), so a weir
  // that takes a partition over makes the same rows from the same events. Batches it makes
  // on its own for a partition (at flush) carry that partition.
  virtual bool partitions_state() const { return false; }
  virtual std::optional<std::string> snapshot_partition(const std::string& /*partition*/) { return std::nullopt; }
  virtual Status restore_partition(const std::string& /*partition*/, std::string_view /*snapshot*/) {
    return Error("this transform keeps no state per partition");
  }
  virtual void drop_partition(const std::string& /*partition*/) {}
};

// An event a sink's encoder refused (see Sink::capture).
struct CaptureRejection {
  std::size_t index = 0;  // into the batch's events
  std::string reason;
};

class Sink {
 public:
  virtual ~Sink() = default;
  virtual Status start(SinkContext& ctx) = 0;
  // Takes a batch. Called only while ready() is true.
  virtual void consume(BatchPtr batch) = 0;
  // False while the sink's own buffer is full: the engine holds batches back (backpressure).
  virtual bool ready() const { return true; }
  // Every input has ended: deliver everything held, then call `done` (once).
  virtual void drain(std::function<void()> done) = 0;

  // What the sink would send for these events in its own encoding (ClickHouse: the
  // JSONEachRow rows it would insert; InfluxDB: line protocol), without sending anything or
  // being started: `weir replay --capture` and `weir test` keep it, so CI tests the
  // encoders too. Called off the loop, one batch at a time, in order. An event the encoder
  // refuses goes into `rejected` with the reason the live sink would dead-letter it for.
  // capture_format() names the encoding (the capture file's suffix); "" when the sink has
  // none of its own beyond the events themselves.
  virtual std::string capture_format() const { return {}; }
  virtual void capture(const EventBatch& /*batch*/, ByteBuffer& /*out*/, std::vector<CaptureRejection>& /*rejected*/) {}
};

namespace http {
struct Request;
class Responder;
}  // namespace http

class ApiContext : public ComponentContext {
 public:
  // The address its requests reach weir at ("host:port"), for absolute URLs in answers.
  virtual const std::string& served_address() const = 0;
  // The running pipeline as weir's API server answers GET /graph (JSON) and GET /metrics
  // (Prometheus text), for an API that shows it under its own access rule and wherever it
  // is served (the analytics API's pipeline page, also on an `address` of its own).
  virtual std::string pipeline_graph() const = 0;
  virtual std::string pipeline_metrics() const = 0;
};

// Reads what the pipeline wrote (the analytics API reads ClickHouse) and answers HTTP
// requests: on weir's API server (`api:`), under the paths it names, or on a server of its
// own (its `address` option). It takes no batches and emits none.
class Api {
 public:
  virtual ~Api() = default;
  virtual Status start(ApiContext& ctx) = 0;
  // Path prefixes it answers on weir's API server ("/api/events", say); they must not
  // overlap the server's own (/health, /metrics, /reload, /tap) nor another API's.
  virtual std::vector<std::string> paths() const = 0;
  // One request under its paths (or any request on its own server). Answered through
  // `responder`, now or later; once stopped, the API answers what was left 503 (stop()).
  virtual void handle(http::Request& request, http::Responder responder) = 0;
  // weir is stopping: abandon work in flight (nothing it does is acknowledged to a source),
  // answering what is still unanswered 503, and call `done` (once) when nothing of it runs
  // off the loop any more (a file write on the thread pool): the runtime waits for that,
  // a few seconds at most, before it destroys the API and closes the loop.
  virtual void stop(std::function<void()> done) = 0;
};

}  // namespace weir
