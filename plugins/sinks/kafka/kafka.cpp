// `kafka` sink: each event a message, JSON, to a topic (which may hold `{{ field }}`), keyed
// by one of its fields. librdkafka runs on the loop (its delivery reports reach the loop
// through an eventfd, kafka::QueueWatch); the producer is idempotent by default, so the
// broker has every message once and in order per partition.
//
// A batch is acknowledged once the broker has acknowledged every message of it (acks=all
// under idempotence), or the message was dead-lettered: a delivery error that sending again
// cannot mend (too large, a topic that does not exist) dead-letters that event with the
// broker's reason; any other (the cluster away past message.timeout.ms) produces it again
// after retry_backoff. Messages are not copied: librdkafka points into the batch's encoded
// bytes, which live until the batch's last message is answered.
#include <algorithm>
#include <deque>
#include <list>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "weir/field_path.hpp"
#include "weir/field_template.hpp"
#include "weir/json.hpp"
#include "weir/kafka.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "bootstrap_servers", .type = OptionType::String, .required = true,
     .doc = "The brokers to start from, `host:port,host:port` (librdkafka's bootstrap.servers)."},
    {.name = "topic", .type = OptionType::String, .required = true,
     .doc = "The topic; may hold `{{ field }}` (an event without the field is dead-lettered)."},
    {.name = "key_field", .type = OptionType::String,
     .doc = "The field whose value is the message key (CVAT: `user_id`, so each user's events share a partition "
            "and keep their order). Strings as they are, other values as JSON; absent or null: no key."},
    {.name = "encoding.codec", .type = OptionType::Enum, .default_value = "json", .choices = {"json"},
     .doc = "Each message is the event as one JSON object."},
    {.name = "compression", .type = OptionType::Enum, .default_value = "none",
     .choices = {"none", "gzip", "snappy", "lz4", "zstd"}, .doc = "librdkafka's compression.codec."},
    {.name = "idempotent", .type = OptionType::Bool, .default_value = "true",
     .doc = "librdkafka's enable.idempotence: the broker keeps each message once, in order, however often it is sent."},
    {.name = "message_timeout", .type = OptionType::Duration, .default_value = "300s",
     .doc = "How long librdkafka keeps trying one message (message.timeout.ms); after it weir produces it again."},
    {.name = "retry_backoff", .type = OptionType::Duration, .default_value = "1s",
     .doc = "Wait before producing again the messages that timed out."},
    {.name = "max_queued_bytes", .type = OptionType::Bytes, .default_value = "16MiB",
     .doc = "Bytes of messages librdkafka holds unacknowledged (queue.buffering.max.kbytes): past it the sink takes "
            "no batches (backpressure)."},
    {.name = "librdkafka_options", .type = OptionType::Map,
     .doc = "Any librdkafka property, as text (`linger.ms: \"10\"`); these win over the ones weir sets."},
};

// One batch on its way: its encoded messages and who waits for them.
struct InFlight;
struct MessageRef {
  InFlight* batch;
  std::uint32_t index;
};
struct Message {
  std::size_t topic;  // index into the sink's topics
  std::size_t key_at, key_size, value_at, value_size;
  std::uint32_t event;  // the batch's event it came from
  bool has_key;
};
struct InFlight {
  BatchPtr batch;  // for dead letters
  ByteBuffer bytes;  // every message's key and value, which librdkafka points into
  std::vector<Message> messages;
  std::vector<MessageRef> refs;  // each message's opaque, stable
  std::vector<AckRef> acks;
  std::size_t next = 0;  // the first message not yet handed to librdkafka
  std::size_t unanswered = 0;
  std::size_t delivered = 0;
  std::uint64_t delivered_bytes = 0;
  bool dead_letters_unwritten = false;
};

class KafkaSink final : public Sink {
 public:
  static Result<std::unique_ptr<KafkaSink>> create(const Options& options) {
    auto topic = FieldTemplate::parse(std::string(options.string("topic")), "topic");
    if (!topic.ok()) return options.error_at("topic", topic.error().message());
    auto self = std::make_unique<KafkaSink>(std::move(topic.value()));
    if (self->topic_.is_constant() && self->topic_.text().empty()) return options.error_at("topic", "topic is empty");
    if (options.has("key_field") && !options.string("key_field").empty()) {
      self->key_ = FieldPath(options.string("key_field"));
      self->keyed_ = true;
    }
    auto ms = [&](std::string_view key) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(options.duration(key)).count();
    };
    self->retry_backoff_ms_ = static_cast<std::uint64_t>(std::max<std::int64_t>(10, ms("retry_backoff")));
    auto& p = self->properties_;
    p["bootstrap.servers"] = options.string("bootstrap_servers");
    p["enable.idempotence"] = options.boolean("idempotent") ? "true" : "false";
    p["compression.codec"] = std::string(options.string("compression"));
    p["message.timeout.ms"] = std::to_string(std::max<std::int64_t>(1, ms("message_timeout")));
    p["queue.buffering.max.kbytes"] = std::to_string(std::max<std::uint64_t>(1, options.bytes("max_queued_bytes") / 1024));
    auto user = kafka::user_properties(options);
    if (!user.ok()) return user.error();
    self->user_properties_ = std::move(user.value());
    // Refused properties are configuration errors: found at validation, not at start.
    if (auto conf = kafka::make_conf(self->properties_, self->user_properties_); !conf.ok()) {
      return options.error_at("librdkafka_options", conf.error().message());
    }
    return self;
  }
  explicit KafkaSink(FieldTemplate topic) : topic_(std::move(topic)) {}

  ~KafkaSink() override {
    // Shutting down with messages unanswered (the drain's deadline passed): they are purged,
    // which answers them as failed, so their sources send them again.
    stopping_ = true;
    if (producer_) {
      rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
      while (rd_kafka_poll(producer_.get(), 0) > 0) {
      }
    }
    watch_.stop();
    main_queue_.reset();
    for (auto& batch : batches_) {
      if (batch->unanswered > 0) fail(*batch, "kafka: the sink stopped before the broker had the batch");
    }
    topics_.clear();
    producer_.reset();  // joins librdkafka's threads
  }

  Status start(SinkContext& ctx) override {
    ctx_ = &ctx;
    properties_["client.id"] = ctx.name();  // librdkafka's log lines and the brokers' own name the component
    auto conf = kafka::make_conf(properties_, user_properties_);
    if (!conf.ok()) return conf.error();
    rd_kafka_conf_set_opaque(conf.value().get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.value().get(), [](rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
      static_cast<KafkaSink*>(opaque)->delivered(*message);
    });
    rd_kafka_conf_set_error_cb(conf.value().get(), [](rd_kafka_t* rk, int err, const char* reason, void* opaque) {
      static_cast<KafkaSink*>(opaque)->client_error(rk, static_cast<rd_kafka_resp_err_t>(err), reason);
    });
    auto producer = kafka::new_client(RD_KAFKA_PRODUCER, std::move(conf.value()), "the Kafka producer");
    if (!producer.ok()) return producer.error();
    producer_ = std::move(producer.value());
    main_queue_.reset(rd_kafka_queue_get_main(producer_.get()));
    return watch_.start(ctx.loop(), main_queue_.get(), [this] { serve(); });
  }

  // Takes a batch while librdkafka's queue has room for what was given before.
  bool ready() const override { return waiting_.empty() && retries_.empty(); }

  void consume(BatchPtr batch) override {
    auto owned = std::make_unique<InFlight>();
    InFlight& in = *owned;
    EpochNanos now = ctx_->clock().now();
    in.bytes.reserve(batch->byte_size() + batch->size() * 16 + 64);
    const auto& events = batch->events();
    for (std::uint32_t i = 0; i < events.size(); ++i) {
      const Event& event = events[i];
      std::size_t topic = 0;
      if (!topic_.is_constant() || topics_.empty()) {
        auto name = topic_.render(event, now);
        if (!name.ok()) {
          dead_letter(in, event, "kafka: " + name.error().message());
          continue;
        }
        auto t = topic_index(name.value());
        if (!t.ok()) {
          dead_letter(in, event, "kafka: " + t.error().message());
          continue;
        }
        topic = t.value();
      }
      Message m{.topic = topic, .key_at = 0, .key_size = 0, .value_at = 0, .value_size = 0, .event = i, .has_key = false};
      if (keyed_) {
        const Value* key = key_.find(event.fields);
        if (key != nullptr && !key->is_null()) {
          m.has_key = true;
          m.key_at = in.bytes.size();
          if (key->is_string()) in.bytes.append(key->as_string());
          else write_json(*key, in.bytes);
          m.key_size = in.bytes.size() - m.key_at;
        }
      }
      m.value_at = in.bytes.size();
      write_json(event.fields, in.bytes);
      m.value_size = in.bytes.size() - m.value_at;
      in.messages.push_back(m);
    }
    in.refs.reserve(in.messages.size());
    for (std::uint32_t i = 0; i < in.messages.size(); ++i) in.refs.push_back({&in, i});
    in.acks = batch->take_acks();
    in.unanswered = in.messages.size();
    in.batch = std::move(batch);
    batches_.push_back(std::move(owned));
    if (in.unanswered == 0) return finish(in);
    produce(in);
  }

  void drain(std::function<void()> done) override {
    drain_done_ = std::move(done);
    maybe_drained();
  }

 private:
  // The topic's index in topics_, its handle made on first use.
  Result<std::size_t> topic_index(const std::string& name) {
    if (auto found = topic_names_.find(name); found != topic_names_.end()) return found->second;
    if (name.empty() || name.size() > 249 ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos ||
        name == "." || name == "..") {
      return Error(fmt::format("'{}' is not a Kafka topic name (1-249 of [a-zA-Z0-9._-])", name));
    }
    rd_kafka_topic_t* topic = rd_kafka_topic_new(producer_.get(), name.c_str(), nullptr);
    if (topic == nullptr) return Error(fmt::format("cannot use topic '{}': {}", name, kafka::error_text(rd_kafka_last_error())));
    topics_.emplace_back(topic);
    topic_names_.emplace(name, topics_.size() - 1);
    return topics_.size() - 1;
  }

  // Hands the batch's messages to librdkafka from `next` on; what its full queue refuses
  // waits for delivery reports to make room.
  void produce(InFlight& in) {
    while (in.next < in.messages.size()) {
      const Message& m = in.messages[in.next];
      if (!send(in, m)) {
        if (rd_kafka_last_error() == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          if (std::find(waiting_.begin(), waiting_.end(), &in) == waiting_.end()) waiting_.push_back(&in);
          was_full_ = true;
          return;
        }
        // Refused before it was queued (too large for message.max.bytes, say): not sendable.
        answer(in, in.next, rd_kafka_last_error());
      }
      ++in.next;
    }
    waiting_.erase(std::remove(waiting_.begin(), waiting_.end(), &in), waiting_.end());
  }

  bool send(InFlight& in, const Message& m) {
    const char* bytes = reinterpret_cast<const char*>(in.bytes.data());
    return rd_kafka_produce(topics_[m.topic].get(), RD_KAFKA_PARTITION_UA, 0, const_cast<char*>(bytes + m.value_at),
                            m.value_size, m.has_key ? bytes + m.key_at : nullptr, m.key_size,
                            &in.refs[static_cast<std::size_t>(&m - in.messages.data())]) == 0;
  }

  // On the loop, whenever librdkafka's main queue has something: delivery reports, errors.
  void serve() {
    while (rd_kafka_poll(producer_.get(), 0) > 0) {
    }
    // Room again: what waited for it goes on, oldest first.
    while (!waiting_.empty()) {
      InFlight* first = waiting_.front();
      produce(*first);
      if (!waiting_.empty() && waiting_.front() == first) break;  // still full
    }
    if (ready() && was_full_) {
      was_full_ = false;
      ctx_->ready_again();
    }
    maybe_drained();
  }

  void delivered(const rd_kafka_message_t& message) {
    auto* ref = static_cast<MessageRef*>(message._private);
    if (ref == nullptr) return;
    answer(*ref->batch, ref->index, message.err);
  }

  // The broker's (or librdkafka's) answer for one message.
  void answer(InFlight& in, std::size_t index, rd_kafka_resp_err_t err) {
    const Message& m = in.messages[index];
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++in.delivered;
      in.delivered_bytes += m.value_size;
    } else if (stopping_ || err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT) {
      fail(in, "kafka: " + kafka::error_text(err));
    } else if (kafka::delivery_error_is_retriable(err)) {
      ctx_->metrics().errors.add();
      ctx_->metrics().retrying(uv_now(ctx_->loop()), "kafka: " + kafka::error_text(err));
      if (retries_.empty()) retry_reason_ = kafka::error_text(err);
      retries_.push_back(&in.refs[index]);
      was_full_ = true;
      if (!retry_timer_.initialized() || !uv_is_active(retry_timer_.base())) retry_later();
      return;  // still unanswered
    } else {
      ctx_->metrics().errors.add();
      dead_letter(in, in.batch->events()[m.event], "kafka: " + kafka::error_text(err));
    }
    if (--in.unanswered == 0) finish(in);
  }

  void retry() {
    std::vector<MessageRef*> again;
    again.swap(retries_);
    log::warn(ctx_->name(), "{} message(s) failed ({}); producing them again", again.size(), retry_reason_);
    for (std::size_t i = 0; i < again.size(); ++i) {
      InFlight& in = *again[i]->batch;
      if (!send(in, in.messages[again[i]->index])) {
        if (rd_kafka_last_error() == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          retries_.insert(retries_.end(), again.begin() + static_cast<std::ptrdiff_t>(i), again.end());
          retry_later();
          return;
        }
        answer(in, again[i]->index, rd_kafka_last_error());
      }
    }
    serve();
  }

  void retry_later() {
    start_timer(retry_timer_, ctx_->loop(), this, [](uv_timer_t* t) { static_cast<KafkaSink*>(t->data)->retry(); },
                retry_backoff_ms_);
  }

  void dead_letter(InFlight& in, const Event& event, const std::string& reason) {
    if (!ctx_->dead_letter(event, reason)) in.dead_letters_unwritten = true;
  }

  // Every message of the batch answered: its acknowledgements go (failed when a dead letter
  // could not be written), after the dead letters are in their file.
  void finish(InFlight& in) {
    ctx_->metrics().events_sent.add(in.delivered);
    ctx_->metrics().bytes_sent.add(in.delivered_bytes);
    if (in.delivered > 0) ctx_->metrics().recovered();
    if (in.dead_letters_unwritten) fail(in, "kafka: a dead letter could not be written");
    std::vector<AckRef> acks = std::move(in.acks);
    if (in.messages.size() != in.delivered) ctx_->hold_until_dead_letters_written(std::move(acks));
    acks.clear();
    for (auto it = batches_.begin(); it != batches_.end(); ++it) {
      if (it->get() == &in) {
        batches_.erase(it);
        break;
      }
    }
    maybe_drained();
  }

  void fail(InFlight& in, const std::string& reason) {
    for (const AckRef& ack : in.acks) ack->fail(reason);
  }

  void client_error(rd_kafka_t* rk, rd_kafka_resp_err_t err, const char* reason) {
    if (kafka::client_error(*ctx_, rk, err, reason, last_client_error_)) {
      ctx_->metrics().retrying(uv_now(ctx_->loop()), fmt::format("kafka: {}", reason));
    }
  }

  void maybe_drained() {
    if (drain_done_ && batches_.empty()) {
      auto done = std::move(drain_done_);
      drain_done_ = nullptr;
      done();
    }
  }

  FieldTemplate topic_;
  FieldPath key_;
  bool keyed_ = false;
  std::map<std::string, std::string> properties_, user_properties_;
  std::uint64_t retry_backoff_ms_ = 1000;
  SinkContext* ctx_ = nullptr;
  kafka::Handle producer_;
  kafka::Queue main_queue_;
  kafka::QueueWatch watch_;
  std::vector<kafka::Topic> topics_;
  std::map<std::string, std::size_t> topic_names_;
  std::list<std::unique_ptr<InFlight>> batches_;
  std::deque<InFlight*> waiting_;  // batches with messages librdkafka's full queue refused
  std::vector<MessageRef*> retries_;  // messages to produce again after retry_backoff
  std::string retry_reason_;          // the first one's error
  UvTimer retry_timer_;
  bool was_full_ = false;
  bool stopping_ = false;
  rd_kafka_resp_err_t last_client_error_ = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::function<void()> drain_done_;
};

}  // namespace

WEIR_REGISTER_SINK("kafka", "Produces events to Kafka (JSON, keyed by a field), acknowledged once the broker has them",
                   kSchema, KafkaSink::create);

}  // namespace weir::plugins
