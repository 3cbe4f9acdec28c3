#include "state_store.hpp"

#include <charconv>

#include <fmt/format.h>

#include "weir/log.hpp"

namespace weir::plugins {

namespace {

std::string key_of(const std::string& owner, const std::string& partition) { return owner + "@" + partition; }

}  // namespace

std::string KafkaStateStore::encode(const PartitionSnapshot& snapshot) {
  return std::to_string(snapshot.next_offset) + "\n" + snapshot.state;
}

Result<PartitionSnapshot> KafkaStateStore::decode(std::string_view value) {
  auto newline = value.find('\n');
  PartitionSnapshot snapshot;
  if (newline == std::string_view::npos) return Error("a state message without its offset line");
  auto [end, error] = std::from_chars(value.data(), value.data() + newline, snapshot.next_offset);
  if (error != std::errc() || end != value.data() + newline) return Error("a state message's offset is not a number");
  snapshot.state = std::string(value.substr(newline + 1));
  return snapshot;
}

std::int32_t KafkaStateStore::partition_number(const std::string& partition) {
  auto slash = partition.rfind('/');
  if (slash == std::string::npos) return -1;
  std::int32_t number = -1;
  auto [end, error] = std::from_chars(partition.data() + slash + 1, partition.data() + partition.size(), number);
  if (error != std::errc() || end != partition.data() + partition.size() || number < 0) return -1;
  return number;
}

KafkaStateStore::~KafkaStateStore() {
  producer_watch_.stop();
  reader_watch_.stop();
  if (producer_) {
    // Writes not yet acknowledged fail (their acknowledgements stay held: the sources send
    // those batches again, to whoever reads the partition next).
    rd_kafka_purge(producer_.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT | RD_KAFKA_PURGE_F_NON_BLOCKING);
    while (rd_kafka_poll(producer_.get(), 0) > 0) {
    }
  }
  producer_queue_.reset();
  reader_queue_.reset();
  producer_topic_.reset();
  producer_.reset();
  if (reader_) rd_kafka_destroy_flags(reader_.release(), RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

Status KafkaStateStore::start(uv_loop_t* loop, const std::map<std::string, std::string>& properties,
                              const std::map<std::string, std::string>& user_properties) {
  // The producer: idempotent, every write acknowledged by all in-sync replicas.
  std::map<std::string, std::string> produce = properties;
  produce["enable.idempotence"] = "true";
  produce["linger.ms"] = "0";
  produce["compression.codec"] = "lz4";  // JSON state: about a quarter of its size
  auto producer_conf = kafka::make_conf(produce, user_properties);
  if (!producer_conf.ok()) return producer_conf.error();
  rd_kafka_conf_set_opaque(producer_conf.value().get(), this);
  rd_kafka_conf_set_dr_msg_cb(producer_conf.value().get(), [](rd_kafka_t*, const rd_kafka_message_t* message, void* opaque) {
    auto* self = static_cast<KafkaStateStore*>(opaque);
    auto* write = static_cast<Write*>(message->_private);
    Status status;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      status = Error(fmt::format("cannot write to state topic '{}': {}", self->topic_, kafka::error_text(message->err)));
    }
    for (auto it = self->writes_.begin(); it != self->writes_.end(); ++it) {
      if (it->get() != write) continue;
      std::unique_ptr<Write> done = std::move(*it);
      self->writes_.erase(it);
      done->done(status);
      break;
    }
  });
  auto producer = kafka::new_client(RD_KAFKA_PRODUCER, std::move(producer_conf.value()), "the state topic's producer");
  if (!producer.ok()) return producer.error();
  producer_ = std::move(producer.value());
  producer_topic_.reset(rd_kafka_topic_new(producer_.get(), topic_.c_str(), nullptr));
  producer_queue_.reset(rd_kafka_queue_get_main(producer_.get()));
  if (Status s = producer_watch_.start(loop, producer_queue_.get(), [this] { serve_producer(); }); !s.ok()) return s;

  // The reader: no group, partitions assigned one by one while read, to their end.
  std::map<std::string, std::string> read;
  for (const char* name : {"bootstrap.servers", "client.id"}) {
    if (auto found = properties.find(name); found != properties.end()) read[name] = found->second;
  }
  read["group.id"] = properties.count("group.id") ? properties.at("group.id") + ".state-reader" : "weir.state-reader";
  read["enable.partition.eof"] = "true";
  read["enable.auto.commit"] = "false";
  read["auto.offset.reset"] = "earliest";
  auto reader_conf = kafka::make_conf(read, {});
  if (!reader_conf.ok()) return reader_conf.error();
  auto reader = kafka::new_client(RD_KAFKA_CONSUMER, std::move(reader_conf.value()), "the state topic's reader");
  if (!reader.ok()) return reader.error();
  reader_ = std::move(reader.value());
  rd_kafka_poll_set_consumer(reader_.get());
  reader_queue_.reset(rd_kafka_queue_get_consumer(reader_.get()));
  return reader_watch_.start(loop, reader_queue_.get(), [this] { serve_reader(); });
}

void KafkaStateStore::read(const std::string& owner, const std::string& partition,
                           std::function<void(Result<std::optional<PartitionSnapshot>>)> done) {
  std::int32_t number = partition_number(partition);
  if (number < 0) return done(Error(fmt::format("'{}' names no partition", partition)));
  Read read{key_of(owner, partition), std::move(done), std::nullopt};
  if (reads_.count(number)) {  // being read, perhaps past this key's messages: read again after
    queued_[number].push_back(std::move(read));
    return;
  }
  reads_[number].push_back(std::move(read));
  start_reading(number);
}

void KafkaStateStore::start_reading(std::int32_t number) {
  if (rd_kafka_error_t* error =
          rd_kafka_incremental_assign(reader_.get(), kafka::one_partition(topic_, number, RD_KAFKA_OFFSET_BEGINNING).get())) {
    std::string why = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    finish_reads(number, fmt::format("cannot read state topic '{}' [{}]: {}", topic_, number, why));
  }
}

void KafkaStateStore::write(const std::string& owner, const std::string& partition, PartitionSnapshot snapshot,
                            std::function<void(Status)> done) {
  std::int32_t number = partition_number(partition);
  if (number < 0) return done(Error(fmt::format("'{}' names no partition", partition)));
  auto write = std::make_unique<Write>(Write{key_of(owner, partition), encode(snapshot), std::move(done)});
  Write* w = write.get();
  writes_.push_back(std::move(write));
  if (rd_kafka_produce(producer_topic_.get(), number, 0, w->value.data(), w->value.size(), w->key.data(), w->key.size(),
                       w) != 0) {
    rd_kafka_resp_err_t err = rd_kafka_last_error();
    std::unique_ptr<Write> failed = std::move(writes_.back());
    writes_.pop_back();
    failed->done(Error(fmt::format("cannot write to state topic '{}' [{}]: {}", topic_, number, kafka::error_text(err))));
  }
}

void KafkaStateStore::serve_producer() {
  while (rd_kafka_poll(producer_.get(), 0) > 0) {
  }
}

void KafkaStateStore::serve_reader() {
  while (rd_kafka_message_t* message = rd_kafka_consumer_poll(reader_.get(), 0)) {
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> owned(message, rd_kafka_message_destroy);
    std::int32_t number = message->partition;
    auto found = reads_.find(number);
    if (message->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (found != reads_.end()) finish_reads(number, std::nullopt);
      continue;
    }
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::string why = rd_kafka_message_errstr(message);
      if (message->rkt != nullptr && found != reads_.end()) {
        finish_reads(number, fmt::format("cannot read state topic '{}' [{}]: {}", topic_, number, why));
      } else {
        log::warn(component_, "state topic '{}': {}", topic_, why);
      }
      continue;
    }
    if (found == reads_.end() || message->key == nullptr) continue;
    std::string_view key(static_cast<const char*>(message->key), message->key_len);
    for (Read& read : found->second) {
      if (read.key == key) read.last = std::string(static_cast<const char*>(message->payload), message->len);
    }
  }
}

void KafkaStateStore::finish_reads(std::int32_t number, const std::optional<std::string>& error) {
  auto found = reads_.find(number);
  if (found == reads_.end()) return;
  std::deque<Read> reads = std::move(found->second);
  reads_.erase(found);
  if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(reader_.get(), kafka::one_partition(topic_, number).get())) {
    rd_kafka_error_destroy(e);
  }
  if (auto queued = queued_.find(number); queued != queued_.end()) {
    reads_[number] = std::move(queued->second);
    queued_.erase(queued);
    start_reading(number);
  }
  for (Read& read : reads) {
    if (error) {
      read.done(Error(*error));
    } else if (!read.last) {
      read.done(std::optional<PartitionSnapshot>());
    } else {
      auto decoded = decode(*read.last);
      if (!decoded.ok()) read.done(decoded.error());
      else read.done(std::optional<PartitionSnapshot>(std::move(decoded.value())));
    }
  }
}

}  // namespace weir::plugins
