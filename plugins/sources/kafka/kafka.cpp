// `kafka` source: a consumer group member. Messages are decoded as events (one message, one
// event) and emitted in batches; librdkafka runs on the loop (kafka::QueueWatch, ADR 016).
//
// Offsets are committed only up to the contiguous prefix of acknowledged batches, per
// partition: a batch is acknowledged once every event of it is delivered by every sink it
// reaches (ADR 006), so a crash makes the group deliver again from the first batch not yet
// acknowledged, and never skips one. A failed acknowledgement rewinds its partition to that
// batch (it is consumed again). When the group takes partitions away, the source stops
// reading them, waits up to drain_timeout for their batches in flight, commits what was
// acknowledged, and only then lets them go; the member that gets them next starts where
// that commit says.
#include <deque>
#include <map>
#include <cstring>

#include <fmt/format.h>

#include "state_store.hpp"
#include "weir/codec.hpp"
#include "weir/kafka.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "bootstrap_servers", .type = OptionType::String, .required = true,
     .doc = "The brokers to start from, `host:port,host:port` (librdkafka's bootstrap.servers)."},
    {.name = "group_id", .type = OptionType::String, .required = true,
     .doc = "The consumer group: its members share the topics' partitions, and its committed offsets say where each "
            "partition goes on."},
    {.name = "topics", .type = OptionType::StringList, .required = true, .doc = "The topics to consume."},
    {.name = "decoding.codec", .type = OptionType::Enum, .default_value = "json", .choices = {"json", "text"},
     .doc = "`json`: each message one JSON object; `text`: the message in a `message` field."},
    {.name = "auto_offset_reset", .type = OptionType::Enum, .default_value = "earliest", .choices = {"earliest", "latest"},
     .doc = "Where a partition the group has no committed offset for starts: `earliest` loses nothing produced "
            "before the group first joined."},
    {.name = "commit_interval", .type = OptionType::Duration, .default_value = "1s",
     .doc = "How often acknowledged offsets are committed (and always before a partition is let go)."},
    {.name = "drain_timeout", .type = OptionType::Duration, .default_value = "30s",
     .doc = "When partitions are taken away: how long their batches in flight may take to be acknowledged before "
            "they are let go anyway (what was not acknowledged is consumed again by the next owner)."},
    {.name = "max_batch_events", .type = OptionType::Integer, .default_value = "4096",
     .doc = "Messages in one emitted batch at most."},
    {.name = "max_fetched_bytes", .type = OptionType::Bytes, .default_value = "8MiB",
     .doc = "Bytes librdkafka prefetches at most (queued.max.messages.kbytes). Measured (tools/bench/kafka.py): "
            "16MiB read no faster and held 16 MiB more; 4MiB halved the rate."},
    {.name = "topic_key", .type = OptionType::String,
     .doc = "Field for the message's topic (`%name`: the event's metadata); empty: not kept."},
    {.name = "partition_key", .type = OptionType::String, .doc = "Field for the partition, as topic_key."},
    {.name = "offset_key", .type = OptionType::String, .doc = "Field for the offset, as topic_key."},
    {.name = "key_field", .type = OptionType::String, .doc = "Field for the message key (a string), as topic_key."},
    {.name = "state_topic", .type = OptionType::String,
     .doc = "Where the transforms after this source that keep state per partition (working_time) keep it, so it "
            "moves with a partition to the weir that takes it over: a topic with at least as many partitions as "
            "each consumed topic, compacted (docs/adr/017-partitioned-state.md). Empty: they keep it on this machine."},
    {.name = "state_interval", .type = OptionType::Duration, .default_value = "1s",
     .doc = "How often a busy partition's state goes to state_topic at most (a whole snapshot each time): "
            "offsets are committed no sooner, and a weir that takes the partition over after a crash reads again "
            "at most about this much."},
    {.name = "librdkafka_options", .type = OptionType::Map,
     .doc = "Any librdkafka property, as text; these win over the ones weir sets."},
};

// Where a message's facts go: a field, or (`%name`) the metadata; empty: nowhere.
struct Stamp {
  std::string key;
  void put(Arena& arena, Event& event, Value value) const {
    if (!key.empty()) set_field_or_metadata(arena, event, key, value);
  }
};

using PartitionId = std::pair<std::string, std::int32_t>;

// A batch's messages of one partition: offsets [first, last].
struct Span {
  std::int64_t first, last;
  std::uint64_t epoch;  // the partition's epoch when emitted: acks of older epochs are stale
  enum class State { InFlight, Done, Failed } state = State::InFlight;
};

struct Partition {
  std::deque<Span> spans;    // emitted, in offset order
  std::uint64_t epoch = 0;   // bumped at every rewind
  std::int64_t done_to = -1;  // every offset below is acknowledged (-1: nothing yet)
  std::int64_t committed = -1;  // what was last committed
  bool revoking = false;
  bool rewind = false;  // a batch failed: consume again from spans.front()
  bool restoring = false;  // paused until the state kept for it downstream is restored
  std::int64_t rewind_to = -1;  // a message that came while restoring: consumed again from here
  // This member acknowledged every offset below before it last let the partition go, and
  // the group may not know it (the commit was refused mid-rebalance): not emitted again.
  std::int64_t delivered_below = -1;
};

// Partitions taken away, let go once their batches in flight are acknowledged and committed.
// (At namespace scope: clang cannot default-construct a nested class with member
// initializers inside the enclosing class's definition.)
struct Revocation {
  kafka::PartitionList list;
  bool committing = false;
  // The offsets its commit carries, until a commit's answer says they are committed (a
  // timer's commit of the same offsets may answer first).
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> awaited;
};

class KafkaSource final : public Source {
 public:
  static Result<std::unique_ptr<KafkaSource>> create(const Options& options) {
    auto self = std::make_unique<KafkaSource>();
    self->topics_ = options.strings("topics");
    if (self->topics_.empty()) return options.error_at("topics", "topics needs at least one topic");
    self->codec_ = options.string("decoding.codec") == "text" ? Codec::Text : Codec::Json;
    if (options.has("state_topic")) self->state_topic_ = options.string("state_topic");
    auto ms = [&](std::string_view key) {
      return static_cast<std::uint64_t>(
          std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::milliseconds>(options.duration(key)).count()));
    };
    self->commit_ms_ = ms("commit_interval");
    self->state_interval_ms_ = ms("state_interval");
    self->drain_ms_ = ms("drain_timeout");
    self->max_batch_ = static_cast<std::size_t>(std::max<std::int64_t>(1, options.integer("max_batch_events")));
    for (auto [name, stamp] : {std::pair{"topic_key", &self->topic_stamp_}, std::pair{"partition_key", &self->partition_stamp_},
                               std::pair{"offset_key", &self->offset_stamp_}, std::pair{"key_field", &self->key_stamp_}}) {
      if (options.has(name)) stamp->key = options.string(name);
      if (stamp->key == "%") return options.error_at(name, std::string(name) + " needs a name after '%'");
    }
    auto& p = self->properties_;
    p["bootstrap.servers"] = options.string("bootstrap_servers");
    p["group.id"] = options.string("group_id");
    p["enable.auto.commit"] = "false";
    p["enable.auto.offset.store"] = "false";
    p["auto.offset.reset"] = std::string(options.string("auto_offset_reset"));
    p["queued.max.messages.kbytes"] = std::to_string(std::max<std::uint64_t>(1, options.bytes("max_fetched_bytes") / 1024));
    auto user = kafka::user_properties(options);
    if (!user.ok()) return user.error();
    self->user_properties_ = std::move(user.value());
    for (const char* ours : {"enable.auto.commit", "enable.auto.offset.store"}) {
      if (self->user_properties_.count(ours)) {
        return options.error_at("librdkafka_options",
                                fmt::format("'{}' is weir's: offsets are committed as batches are acknowledged", ours));
      }
    }
    if (auto conf = kafka::make_conf(self->properties_, self->user_properties_); !conf.ok()) {
      return options.error_at("librdkafka_options", conf.error().message());
    }
    return self;
  }

  ~KafkaSource() override { close(); }

  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    decoder_ = std::make_unique<LineDecoder>(codec_);
    properties_["client.id"] = ctx.name();  // librdkafka's log lines and the brokers' own name the component
    auto conf = kafka::make_conf(properties_, user_properties_);
    if (!conf.ok()) return conf.error();
    rd_kafka_conf_set_opaque(conf.value().get(), this);
    rd_kafka_conf_set_rebalance_cb(conf.value().get(), [](rd_kafka_t*, rd_kafka_resp_err_t err,
                                                          rd_kafka_topic_partition_list_t* partitions, void* opaque) {
      static_cast<KafkaSource*>(opaque)->rebalance(err, partitions);
    });
    rd_kafka_conf_set_offset_commit_cb(conf.value().get(), [](rd_kafka_t*, rd_kafka_resp_err_t err,
                                                              rd_kafka_topic_partition_list_t* offsets, void* opaque) {
      static_cast<KafkaSource*>(opaque)->committed(err, offsets);
    });
    rd_kafka_conf_set_error_cb(conf.value().get(), [](rd_kafka_t* rk, int err, const char* reason, void* opaque) {
      static_cast<KafkaSource*>(opaque)->client_error(rk, static_cast<rd_kafka_resp_err_t>(err), reason);
    });
    auto consumer = kafka::new_client(RD_KAFKA_CONSUMER, std::move(conf.value()), "the Kafka consumer");
    if (!consumer.ok()) return consumer.error();
    consumer_ = std::move(consumer.value());
    rd_kafka_t* rk = consumer_.get();
    // Rebalances, errors and messages all come through the consumer queue, served below.
    rd_kafka_poll_set_consumer(rk);
    queue_.reset(rd_kafka_queue_get_consumer(rk));
    kafka::PartitionList topics(rd_kafka_topic_partition_list_new(static_cast<int>(topics_.size())));
    for (const std::string& t : topics_) rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    if (rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, topics.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Error(fmt::format("cannot subscribe to {}: {}", fmt::join(topics_, ", "), kafka::error_text(err)));
    }
    if (!state_topic_.empty()) {
      store_ = std::make_shared<KafkaStateStore>(ctx.name(), state_topic_, state_interval_ms_);
      if (Status started = store_->start(ctx.loop(), properties_, user_properties_); !started.ok()) return started;
    }
    if (Status watching = watch_.start(ctx.loop(), queue_.get(), [this] { serve(); }); !watching.ok()) return watching;
    int rc = start_timer(commit_timer_, ctx.loop(), this, [](uv_timer_t* t) { static_cast<KafkaSource*>(t->data)->commit(); },
                         commit_ms_, commit_ms_);
    if (rc != 0) return Error("cannot start the commit timer: " + uv_error_text(rc));
    return {};
  }

  bool partitioned() const override { return !state_topic_.empty(); }

  void resume() override {
    if (!paused_ || stopping_) return;
    paused_ = false;
    if (pause_timer_.initialized()) uv_timer_stop(pause_timer_.get());
    if (partitions_paused_) set_paused(false);
    partitions_paused_ = false;
    serve();
  }

  // Stops consuming: batches in flight may still be acknowledged (and committed) until the
  // pipeline is drained; the group is left when the source goes.
  void stop() override {
    if (stopping_) return;
    stopping_ = true;
    commit();
    if (ctx_ != nullptr) ctx_->finished();
  }

 private:
  // On the loop, whenever the consumer queue has something: messages (while downstream has
  // room), rebalances, errors.
  void serve() {
    if (!consumer_ || serving_) return;
    serving_ = true;
    while (true) {
      if (stopping_ || partitions_paused_) {
        // Still polled: rebalances and errors must be served (librdkafka leaves the group
        // when a member stops polling); messages of paused partitions do not come.
        drop_messages_while_paused();
        break;
      }
      // Downstream is full: nothing is polled for a while, the fetched messages wait in
      // librdkafka's queue (pausing the partitions would drop them, to be fetched again).
      if (paused_) break;
      std::vector<Read> reads = read_batches();
      if (reads.empty()) break;
      bool room = true;
      for (Read& read : reads) room = emit(read) && room;
      if (!room) {
        paused_ = true;
        // Full for long: the partitions are paused and the queue polled again, so that a
        // rebalance is not kept waiting (max.poll.interval.ms).
        start_timer(pause_timer_, ctx_->loop(), this,
                    [](uv_timer_t* t) {
                      auto* self = static_cast<KafkaSource*>(t->data);
                      if (!self->paused_ || self->stopping_) return;
                      self->partitions_paused_ = true;
                      self->set_paused(true);
                      self->serve();
                    },
                    kPausePartitionsAfterMs);
      }
    }
    serving_ = false;
  }

  // What one poll round read of one partition: its batch and the offsets in it.
  struct Read {
    PartitionId id;
    BatchPtr batch;
    Span span;
  };

  // Up to max_batch_ messages that are waiting, decoded, a batch per partition (a batch's
  // acknowledgement then moves one partition's offsets, and a transform that keeps state per
  // partition files each batch under one); none when nothing waits.
  std::vector<Read> read_batches() {
    std::vector<Read> reads;
    std::map<PartitionId, std::size_t> index;
    std::vector<DecodeRejection> rejected;
    std::size_t taken = 0;
    while (taken < max_batch_) {
      rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer_.get(), 0);
      if (message == nullptr) break;
      std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> owned(message, rd_kafka_message_destroy);
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (message->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          ctx_->metrics().errors.add();
          log::warn(ctx_->name(), "Kafka: {}", rd_kafka_message_errstr(message));
        }
        continue;
      }
      PartitionId id{rd_kafka_topic_name(message->rkt), message->partition};
      auto found = partitions_.find(id);
      // A message of a partition being let go (or not ours any more): its next owner has it.
      // One of a partition whose state is being restored cannot come (it is paused until then).
      if (found == partitions_.end() || found->second.revoking || found->second.rewind) continue;
      if (message->offset < found->second.delivered_below) {
        skip_delivered(id, found->second, message->offset);
        continue;
      }
      if (found->second.restoring) {
        log::error(ctx_->name(), "a message of {} [{}] came before its state was restored: consumed again later",
                   id.first, id.second);
        found->second.rewind_to = found->second.rewind_to < 0 ? message->offset : found->second.rewind_to;
        continue;
      }
      ++taken;
      auto [slot, fresh] = index.try_emplace(id, reads.size());
      if (fresh) reads.push_back({id, EventBatch::create(), Span{message->offset, message->offset, found->second.epoch}});
      Read& read = reads[slot->second];
      read.span.last = message->offset;
      EventBatch& batch = *read.batch;
      std::size_t before = batch.size();
      std::string_view payload(static_cast<const char*>(message->payload), message->len);
      // The payload is copied into a padded chunk the batch keeps: text events point into
      // it, and simdjson reads it without another copy.
      auto chunk = std::make_shared<InputChunk>(payload.size());
      if (!payload.empty()) std::memcpy(chunk->bytes.get(), payload.data(), payload.size());
      std::size_t rejections = rejected.size();
      decoder_->decode_line(std::string_view(chunk->bytes.get(), payload.size()), payload.size() + InputChunk::padding,
                            batch, rejected);
      if (rejected.size() > rejections) {
        rejected.back().reason = fmt::format("{} (topic {}, partition {}, offset {})", rejected.back().reason, id.first,
                                             id.second, message->offset);
      }
      if (decoder_->points_into_input()) batch.retain(chunk);
      batch.add_byte_size(payload.size());
      for (std::size_t i = before; i < batch.size(); ++i) stamp(batch, batch.events()[i], *message, id);
    }
    for (const DecodeRejection& r : rejected) ctx_->dead_letter_raw(r.raw, r.line, r.reason);
    return reads;
  }

  // A partition came back to this member from an older commit than its own acknowledgements:
  // the messages below them were delivered, so they are passed over and that offset is
  // committed again. (librdkafka's mock cluster refuses commits while the group rebalances,
  // which is when a revoked partition's last commit is sent; a real broker takes them.)
  void skip_delivered(const PartitionId& id, Partition& p, std::int64_t offset) {
    if (p.done_to < p.delivered_below) {
      log::info(ctx_->name(), "{} [{}]: offsets {} to {} were delivered before this member last let it go: not emitted again",
                id.first, id.second, offset, p.delivered_below - 1);
      p.done_to = p.delivered_below;  // nothing was emitted since the assignment: no span precedes
    }
  }

  void stamp(EventBatch& batch, Event& event, const rd_kafka_message_t& message, const PartitionId& id) {
    Arena& arena = batch.arena();
    if (!topic_stamp_.key.empty()) topic_stamp_.put(arena, event, Value::string(arena, id.first));
    partition_stamp_.put(arena, event, Value::integer(id.second));
    offset_stamp_.put(arena, event, Value::integer(message.offset));
    if (!key_stamp_.key.empty() && message.key != nullptr) {
      key_stamp_.put(arena, event, Value::string(arena, std::string_view(static_cast<const char*>(message.key), message.key_len)));
    }
  }

  static std::string partition_name(const PartitionId& id) { return id.first + "/" + std::to_string(id.second); }

  bool emit(Read& read) {
    auto found = partitions_.find(read.id);
    if (found != partitions_.end()) found->second.spans.push_back(read.span);
    read.batch->set_partition(std::make_shared<PartitionPosition>(PartitionPosition{partition_name(read.id), read.span.last + 1}));
    read.batch->add_ack(Acknowledgement::make(
        [this, alive = alive_, id = read.id, epoch = read.span.epoch, first = read.span.first](DeliveryStatus status,
                                                                                               const std::string& reason) {
          if (*alive) acknowledged(id, epoch, first, status, reason);
        }));
    return ctx_->emit(std::move(read.batch));
  }

  void acknowledged(const PartitionId& id, std::uint64_t epoch, std::int64_t first, DeliveryStatus status,
                    const std::string& reason) {
    auto found = partitions_.find(id);
    if (found != partitions_.end() && found->second.epoch == epoch) {  // else rewound since: consumed again
      Partition& p = found->second;
      for (Span& span : p.spans) {
        if (span.first != first) continue;
        span.state = status == DeliveryStatus::Delivered ? Span::State::Done : Span::State::Failed;
        break;
      }
      if (status != DeliveryStatus::Delivered && !p.rewind) {
        log::warn(ctx_->name(), "a batch of {} [{}] from offset {} failed ({}): consuming it again", id.first, id.second,
                  first, reason);
        p.rewind = true;
      }
      advance(id, p);
    }
    settle_revocation();
  }

  // The acknowledged prefix of a partition's spans moves done_to; a failed span at the front
  // (nothing before it waits) rewinds the partition to it.
  void advance(const PartitionId& id, Partition& p) {
    while (!p.spans.empty() && p.spans.front().state == Span::State::Done) {
      p.done_to = p.spans.front().last + 1;
      p.spans.pop_front();
    }
    if (p.rewind && !p.spans.empty() && p.spans.front().state != Span::State::InFlight && !stopping_) {
      std::int64_t from = p.spans.front().first;
      p.spans.clear();
      ++p.epoch;
      p.rewind = false;
      seek(id, from);
    }
  }

  // Commits, asynchronously, every partition's acknowledged offset that is past the last commit.
  void commit() {
    if (!consumer_) return;
    kafka::PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions_.size()) + 1));
    for (auto& [id, p] : partitions_) {
      if (p.done_to > p.committed) {
        rd_kafka_topic_partition_list_add(list.get(), id.first.c_str(), id.second)->offset = p.done_to;
        p.committed = p.done_to;
      }
    }
    if (list->cnt == 0) return;
    rd_kafka_resp_err_t err = rd_kafka_commit(consumer_.get(), list.get(), 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) committed(err, list.get());
  }

  void committed(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* offsets) {
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) return;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      ctx_->metrics().errors.add();
      log::warn(ctx_->name(), "committing offsets failed: {} (they go again with the next commit)", kafka::error_text(err));
      for (int i = 0; offsets != nullptr && i < offsets->cnt; ++i) {
        auto found = partitions_.find({offsets->elems[i].topic, offsets->elems[i].partition});
        if (found != partitions_.end()) found->second.committed = -1;
      }
    }
    if (!revocation_ || !revocation_->committing) return;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Not committed: let go all the same (the group is waiting); the next owner reads again
      // from the last commit, so batches are delivered twice, none lost.
      return finish_revocation();
    }
    for (int i = 0; offsets != nullptr && i < offsets->cnt; ++i) {
      const rd_kafka_topic_partition_t& elem = offsets->elems[i];
      auto awaited = revocation_->awaited.find({elem.topic, elem.partition});
      if (awaited != revocation_->awaited.end() && elem.err == RD_KAFKA_RESP_ERR_NO_ERROR && elem.offset >= awaited->second) {
        revocation_->awaited.erase(awaited);
      }
    }
    if (revocation_->awaited.empty()) finish_revocation();
  }

  // ---- rebalancing -------------------------------------------------------------------

  void rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* list) {
    cooperative_ = std::string_view(rd_kafka_rebalance_protocol(consumer_.get())) == "COOPERATIVE";
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      for (int i = 0; i < list->cnt; ++i) {
        PartitionId id{list->elems[i].topic, list->elems[i].partition};
        Partition& p = partitions_[id];
        p = Partition();
        p.epoch = ++epochs_;
        if (auto known = delivered_.find(id); known != delivered_.end()) {
          p.delivered_below = known->second;
          delivered_.erase(known);
        }
      }
      log::info(ctx_->name(), "assigned {}", describe(list));
      rd_kafka_error_t* error = nullptr;
      if (cooperative_) error = rd_kafka_incremental_assign(consumer_.get(), list);
      else if (rd_kafka_resp_err_t e = rd_kafka_assign(consumer_.get(), list); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log::error(ctx_->name(), "cannot take the assigned partitions: {}", kafka::error_text(e));
      }
      if (error != nullptr) {
        log::error(ctx_->name(), "cannot take the assigned partitions: {}", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
      }
      // librdkafka keeps a partition's pause across an unassign (a revocation paused it). An
      // assigned partition stays paused until the state kept for it downstream is restored
      // (ADR 017), then reads from where that state leaves off, unless downstream is full.
      rd_kafka_pause_partitions(consumer_.get(), list);
      for (int i = 0; i < list->cnt; ++i) restore_then_read({list->elems[i].topic, list->elems[i].partition});
      return;
    }
    if (closing_) {  // leaving: nothing more will be acknowledged
      if (cooperative_) {
        if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer_.get(), list)) rd_kafka_error_destroy(error);
      } else {
        rd_kafka_assign(consumer_.get(), nullptr);
      }
      return;
    }
    // Taken away: stop reading them now; let them go once their batches are acknowledged
    // and committed (or drain_timeout passed).
    revocation_.emplace();
    revocation_->list.reset(rd_kafka_topic_partition_list_copy(list));
    for (int i = 0; i < list->cnt; ++i) {
      auto found = partitions_.find({list->elems[i].topic, list->elems[i].partition});
      if (found != partitions_.end()) found->second.revoking = true;
    }
    rd_kafka_pause_partitions(consumer_.get(), list);
    log::info(ctx_->name(), "letting go of {} once their batches in flight are acknowledged", describe(list));
    start_timer(revoke_timer_, ctx_->loop(), this,
                [](uv_timer_t* t) {
                  auto* self = static_cast<KafkaSource*>(t->data);
                  if (!self->revocation_) return;
                  log::warn(self->ctx_->name(), "letting go of partitions with batches still unacknowledged after {} ms: "
                            "their next owner consumes them again", self->drain_ms_);
                  self->revocation_->committing = true;
                  self->finish_revocation();
                },
                drain_ms_);
    settle_revocation();
  }

  // Once every revoked partition has nothing in flight: commit, then let go.
  void settle_revocation() {
    if (!revocation_ || revocation_->committing) return;
    for (int i = 0; i < revocation_->list->cnt; ++i) {
      auto found = partitions_.find({revocation_->list->elems[i].topic, revocation_->list->elems[i].partition});
      if (found != partitions_.end() && !found->second.spans.empty()) return;
    }
    revocation_->committing = true;
    // Every acknowledged offset again, even one a timer's commit has sent: that one may not
    // be answered yet, and the next owner starts from what is committed.
    kafka::PartitionList list(rd_kafka_topic_partition_list_new(revocation_->list->cnt));
    for (int i = 0; i < revocation_->list->cnt; ++i) {
      auto found = partitions_.find({revocation_->list->elems[i].topic, revocation_->list->elems[i].partition});
      if (found == partitions_.end() || found->second.done_to < 0) continue;
      rd_kafka_topic_partition_list_add(list.get(), found->first.first.c_str(), found->first.second)->offset = found->second.done_to;
      found->second.committed = found->second.done_to;
      revocation_->awaited[found->first] = found->second.done_to;
    }
    if (list->cnt == 0) return finish_revocation();
    // A commit's answer covering them (committed()) lets them go.
    if (rd_kafka_commit(consumer_.get(), list.get(), 1) != RD_KAFKA_RESP_ERR_NO_ERROR) finish_revocation();
  }

  void restore_then_read(const PartitionId& id) {
    auto found = partitions_.find(id);
    if (found == partitions_.end()) return;
    found->second.restoring = true;
    std::uint64_t epoch = found->second.epoch;
    auto ready = [this, alive = alive_, id, epoch](Result<std::optional<std::int64_t>> restored) {
      if (!*alive) return;
      auto found = partitions_.find(id);
      if (found == partitions_.end() || found->second.epoch != epoch) return;  // let go meanwhile
      Partition& p = found->second;
      if (!restored.ok()) {
        ctx_->metrics().errors.add();
        log::error(ctx_->name(), "{} [{}] is not read: {}", id.first, id.second, restored.error().message());
        return;  // stays paused
      }
      p.restoring = false;
      std::int64_t from = restored.value().value_or(p.rewind_to);
      if (from >= 0) seek(id, from);
      p.rewind_to = -1;
      if (!partitions_paused_ && !stopping_) {
        rd_kafka_resume_partitions(consumer_.get(), kafka::one_partition(id.first, id.second).get());
      }
    };
    if (!store_) return ready(std::optional<std::int64_t>());
    ctx_->partition_assigned(partition_name(id), store_, std::move(ready));
  }

  void finish_revocation() {
    if (!revocation_) return;
    uv_timer_stop(revoke_timer_.get());
    rd_kafka_topic_partition_list_t* list = revocation_->list.get();
    for (int i = 0; i < list->cnt; ++i) {
      PartitionId id{list->elems[i].topic, list->elems[i].partition};
      auto found = partitions_.find(id);
      // Settled: every batch emitted was acknowledged, so the state downstream covers them.
      bool settled = found != partitions_.end() && found->second.spans.empty();
      if (found != partitions_.end()) remember_delivered(id, found->second);
      partitions_.erase(id);
      if (store_) ctx_->partition_revoked(partition_name(id), settled);
    }
    log::info(ctx_->name(), "let go of {}", describe(list));
    if (cooperative_) {
      if (rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer_.get(), list)) rd_kafka_error_destroy(error);
    } else {
      rd_kafka_assign(consumer_.get(), nullptr);
      for (const auto& [id, p] : partitions_) {
        remember_delivered(id, p);
        if (store_) ctx_->partition_revoked(partition_name(id), false);
      }
      partitions_.clear();
    }
    revocation_.reset();
  }

  // What this member acknowledged of a partition it lets go, in case the partition comes
  // back (skip_delivered). Not with a state store: the state restored there covers an offset
  // of its own, and the transform needs every message after it again.
  void remember_delivered(const PartitionId& id, const Partition& p) {
    std::int64_t below = std::max(p.done_to, p.delivered_below);  // (let go again before reading past it)
    if (!store_ && below >= 0) delivered_[id] = below;
  }

  static std::string describe(const rd_kafka_topic_partition_list_t* list) {
    std::string out;
    for (int i = 0; i < list->cnt; ++i) out += fmt::format("{}{} [{}]", i ? ", " : "", list->elems[i].topic, list->elems[i].partition);
    return out.empty() ? "no partitions" : out;
  }

  void set_paused(bool pause) {
    kafka::PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(partitions_.size()) + 1));
    for (const auto& [id, p] : partitions_) {
      if (!p.revoking && !p.restoring) rd_kafka_topic_partition_list_add(list.get(), id.first.c_str(), id.second);
    }
    if (list->cnt == 0) return;
    if (pause) rd_kafka_pause_partitions(consumer_.get(), list.get());
    else rd_kafka_resume_partitions(consumer_.get(), list.get());
  }

  // Paused, the queue still brings rebalances and errors (served by the poll). Messages
  // fetched before the pause are dropped by librdkafka itself; one that still comes (a
  // partition assigned meanwhile) is not emitted, and its partition is sent back to it.
  void drop_messages_while_paused() {
    std::map<PartitionId, std::int64_t> first_dropped;
    while (rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer_.get(), 0)) {
      if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        first_dropped.try_emplace({rd_kafka_topic_name(message->rkt), message->partition}, message->offset);
      }
      rd_kafka_message_destroy(message);
    }
    for (const auto& [id, offset] : first_dropped) seek(id, offset);
  }

  // Fetching of the partition restarts at `offset` (non-blocking); what was fetched before is dropped.
  void seek(const PartitionId& id, std::int64_t offset) {
    kafka::PartitionList list = kafka::one_partition(id.first, id.second, offset);
    if (rd_kafka_error_t* error = rd_kafka_seek_partitions(consumer_.get(), list.get(), 0)) {
      log::error(ctx_->name(), "cannot consume {} [{}] again from offset {}: {}", id.first, id.second, offset,
                 rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
    }
  }

  void client_error(rd_kafka_t* rk, rd_kafka_resp_err_t err, const char* reason) {
    if (kafka::client_error(*ctx_, rk, err, reason, last_client_error_)) ctx_->metrics().errors.add();
  }

  // Leaves the group, so its partitions go to the other members at once rather than after
  // the session timeout: what was acknowledged is committed, the partitions are let go
  // without waiting for batches (the pipeline has drained, or gave up), for at most
  // kCloseMs of blocking at the very end.
  void close() {
    *alive_ = false;
    watch_.stop();
    commit_timer_.close();
    revoke_timer_.close();
    pause_timer_.close();
    if (!consumer_) return;
    closing_ = true;
    commit();
    if (rd_kafka_error_t* error = rd_kafka_consumer_close_queue(consumer_.get(), queue_.get())) {
      rd_kafka_error_destroy(error);
    } else {
      auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kCloseMs);
      while (!rd_kafka_consumer_closed(consumer_.get()) && std::chrono::steady_clock::now() < deadline) {
        rd_kafka_event_t* event = rd_kafka_queue_poll(queue_.get(), 100);
        if (event == nullptr) continue;
        if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE) {
          rebalance(rd_kafka_event_error(event), rd_kafka_event_topic_partition_list(event));
        }
        rd_kafka_event_destroy(event);
      }
    }
    queue_.reset();
    consumer_.reset();
  }

  std::vector<std::string> topics_;
  std::string state_topic_;
  std::shared_ptr<KafkaStateStore> store_;
  Codec codec_ = Codec::Json;
  std::uint64_t commit_ms_ = 1000, drain_ms_ = 30000, state_interval_ms_ = 1000;
  std::size_t max_batch_ = 4096;
  Stamp topic_stamp_, partition_stamp_, offset_stamp_, key_stamp_;
  std::map<std::string, std::string> properties_, user_properties_;
  SourceContext* ctx_ = nullptr;
  std::unique_ptr<LineDecoder> decoder_;
  kafka::Handle consumer_;
  kafka::Queue queue_;
  kafka::QueueWatch watch_;
  UvTimer commit_timer_, revoke_timer_;
  std::map<PartitionId, Partition> partitions_;
  std::optional<Revocation> revocation_;
  std::map<PartitionId, std::int64_t> delivered_;  // per partition let go: its done_to then
  std::uint64_t epochs_ = 0;
  bool cooperative_ = false;
  bool paused_ = false;             // downstream full: no messages are polled
  bool partitions_paused_ = false;  // ... for long: the partitions are paused too
  UvTimer pause_timer_;
  static constexpr std::uint64_t kPausePartitionsAfterMs = 5000;
  bool stopping_ = false;
  bool serving_ = false;
  bool closing_ = false;
  static constexpr int kCloseMs = 5000;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  rd_kafka_resp_err_t last_client_error_ = RD_KAFKA_RESP_ERR_NO_ERROR;
};

}  // namespace

WEIR_REGISTER_SOURCE("kafka", "Consumes Kafka topics as a consumer group member; commits only acknowledged offsets",
                     kSchema, KafkaSource::create);

}  // namespace weir::plugins
