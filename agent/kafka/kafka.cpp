#include "weir/kafka.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/format.h>

#include "weir/json.hpp"
#include "weir/log.hpp"

namespace weir::kafka {

Result<Conf> make_conf(const std::map<std::string, std::string>& weir_properties,
                       const std::map<std::string, std::string>& user_properties) {
  Conf conf(rd_kafka_conf_new());
  char why[512];
  for (const auto* properties : {&weir_properties, &user_properties}) {
    for (const auto& [name, value] : *properties) {
      if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), why, sizeof why) != RD_KAFKA_CONF_OK) {
        return Error(fmt::format("librdkafka refused '{}': {}", name, why));
      }
    }
  }
  return conf;
}

Result<std::map<std::string, std::string>> user_properties(const Options& options) {
  std::map<std::string, std::string> properties;
  const Value* user = options.find("librdkafka_options");
  if (user == nullptr || user->is_null()) return properties;
  if (!user->is_object()) return options.error_at("librdkafka_options", "librdkafka_options must be a mapping");
  for (const Member& m : user->members()) {
    if (m.value.is_object() || m.value.is_array() || m.value.is_null()) {
      return options.error_at("librdkafka_options", fmt::format("librdkafka option '{}' must be a scalar", m.key));
    }
    properties[std::string(m.key)] = m.value.is_string() ? std::string(m.value.as_string()) : to_json(m.value);
  }
  return properties;
}

Result<Handle> new_client(rd_kafka_type_t type, Conf conf, std::string_view what) {
  route_logs(conf.get());
  char why[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), why, sizeof why);
  if (rk == nullptr) return Error(fmt::format("cannot make {}: {}", what, why));
  conf.release();  // rd_kafka_new took it
  return Handle(rk);
}

PartitionList one_partition(const std::string& topic, std::int32_t partition, std::int64_t offset) {
  PartitionList list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = offset;
  return list;
}

bool client_error(ComponentContext& ctx, rd_kafka_t* rk, rd_kafka_resp_err_t err, const char* reason,
                  rd_kafka_resp_err_t& last) {
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char why[512];
    rd_kafka_resp_err_t cause = rd_kafka_fatal_error(rk, why, sizeof why);
    ctx.fail_pipeline(fmt::format("the Kafka {} failed for good ({}): {}",
                                  rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? "producer" : "consumer", error_text(cause), why));
    return false;
  }
  if (err != last) log::warn(ctx.name(), "Kafka: {}", reason);
  last = err;
  return true;
}

void route_logs(rd_kafka_conf_t* conf) {
  rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t* rk, int level, const char* facility, const char* text) {
    std::string_view name = rd_kafka_name(rk);  // "<client.id>#producer-1"
    name = name.substr(0, name.find('#'));
    std::string_view kind = facility;
    // librdkafka's syslog levels: 0-3 errors, 4 warnings, 5-6 notices and info, 7 debug.
    if (level <= 4 && kind != "FAIL" && kind != "CONFWARN") log::warn(name, "librdkafka {}: {}", facility, text);
    else log::debug(name, "librdkafka {}: {}", facility, text);
  });
}

std::string error_text(rd_kafka_resp_err_t err) { return rd_kafka_err2str(err); }

bool delivery_error_is_retriable(rd_kafka_resp_err_t err) {
  switch (err) {
    // What the message is, or where it is going, and what the cluster's settings allow:
    // sending it again gives the same answer.
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return false;
    default:
      return true;
  }
}

Status QueueWatch::start(uv_loop_t* loop, rd_kafka_queue_t* queue, std::function<void()> on_ready) {
  stop();
  fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) return Error(fmt::format("cannot make an eventfd: {}", uv_strerror(uv_translate_sys_error(errno))));
  int rc = uv_poll_init(loop, poll_.get(), fd_);
  if (rc != 0) {
    ::close(fd_);
    fd_ = -1;
    return Error(fmt::format("cannot watch the eventfd: {}", uv_strerror(rc)));
  }
  poll_.mark_initialized();
  poll_.get()->data = this;
  on_ready_ = std::move(on_ready);
  queue_ = queue;
  // An eventfd counter: 8 bytes, any value adds. librdkafka writes these on the queue's
  // empty -> non-empty edge.
  static const std::uint64_t kOne = 1;
  rd_kafka_queue_io_event_enable(queue_, fd_, &kOne, sizeof kOne);
  rc = uv_poll_start(poll_.get(), UV_READABLE, [](uv_poll_t* handle, int /*status*/, int /*events*/) {
    auto* self = static_cast<QueueWatch*>(handle->data);
    if (self == nullptr) return;
    std::uint64_t count;
    while (read(self->fd_, &count, sizeof count) > 0) {
    }
    self->on_ready_();
  });
  if (rc != 0) {
    stop();
    return Error(fmt::format("cannot watch the eventfd: {}", uv_strerror(rc)));
  }
  // Elements that came before the wake-up was on: served at once.
  std::uint64_t one = 1;
  if (write(fd_, &one, sizeof one) < 0) return Error("cannot wake the loop for librdkafka's queue");
  return {};
}

void QueueWatch::stop() {
  if (queue_ != nullptr) rd_kafka_queue_io_event_enable(queue_, -1, nullptr, 0);
  queue_ = nullptr;
  poll_.close();
  poll_ = UvHandle<uv_poll_t>();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace weir::kafka
