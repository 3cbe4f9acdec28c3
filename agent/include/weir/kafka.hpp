// librdkafka on the loop, for the `kafka` sink and source: RAII for its handles, a
// configuration built from weir's options and the user's `librdkafka_options`, and a watch
// that lets the loop serve a librdkafka queue when it has something, with no thread of
// weir's own blocked on it.
#pragma once

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "weir/component.hpp"
#include "weir/options.hpp"
#include "weir/result.hpp"
#include "weir/uv.hpp"

namespace weir::kafka {

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct QueueDeleter {
  void operator()(rd_kafka_queue_t* queue) const { rd_kafka_queue_destroy(queue); }
};
struct TopicDeleter {
  void operator()(rd_kafka_topic_t* topic) const { rd_kafka_topic_destroy(topic); }
};
struct PartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* list) const { rd_kafka_topic_partition_list_destroy(list); }
};
using Conf = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;
using Handle = std::unique_ptr<rd_kafka_t, HandleDeleter>;
using Queue = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;
using Topic = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionListDeleter>;

// Properties in order: weir's own first, then the user's `librdkafka_options`, which win.
// An error names the property librdkafka refused and says why.
Result<Conf> make_conf(const std::map<std::string, std::string>& weir_properties,
                       const std::map<std::string, std::string>& user_properties);

// A client made of `conf` (taken), its log lines routed to weir's (route_logs); an error
// names `what` ("the Kafka producer").
Result<Handle> new_client(rd_kafka_type_t type, Conf conf, std::string_view what);

// A list of one partition, at `offset` (none by default).
PartitionList one_partition(const std::string& topic, std::int32_t partition,
                            std::int64_t offset = RD_KAFKA_OFFSET_INVALID);

// librdkafka's error callback for `ctx`'s client: a fatal error (an idempotent producer's
// broken sequence, say) leaves the client unusable and stops the pipeline; any other is
// logged once for as long as the same kind comes in a row (brokers going away are reported
// per connection). False for a fatal one; else the caller records it as fits.
bool client_error(ComponentContext& ctx, rd_kafka_t* rk, rd_kafka_resp_err_t err, const char* reason,
                  rd_kafka_resp_err_t& last);

// The component's `librdkafka_options` (a mapping of scalars), as librdkafka's text
// properties; an error placed at the option.
Result<std::map<std::string, std::string>> user_properties(const Options& options);

// librdkafka's own log lines go to weir's log, under the client's `client.id` (weir sets it
// to the component's name): its errors and warnings as warnings, the rest at debug. A
// connection's failures (FAIL) and a property meant for the other kind of client (CONFWARN)
// are debug: the error callback reports the first, and the second is how weir shares one
// set of properties between a component's clients.
void route_logs(rd_kafka_conf_t* conf);

// The text of a librdkafka error code ("Broker: Message size too large").
std::string error_text(rd_kafka_resp_err_t err);

// Whether a message that failed with `err` may succeed if produced again (the cluster was
// away, a leader moved) rather than never (too large, refused by the broker for what it is).
bool delivery_error_is_retriable(rd_kafka_resp_err_t err);

// Serves a librdkafka queue from the loop: librdkafka writes a byte to a non-blocking
// eventfd when an element arrives on the empty queue (rd_kafka_queue_io_event_enable); the
// loop's poll on that fd calls `on_ready`, which must drain the queue (the wake-up is only
// sent on empty -> non-empty). stop() turns the wake-up off before the queue goes.
class QueueWatch {
 public:
  QueueWatch() = default;
  QueueWatch(const QueueWatch&) = delete;
  QueueWatch& operator=(const QueueWatch&) = delete;
  ~QueueWatch() { stop(); }

  // `queue` must outlive the watch (or stop()).
  Status start(uv_loop_t* loop, rd_kafka_queue_t* queue, std::function<void()> on_ready);
  void stop();

 private:
  rd_kafka_queue_t* queue_ = nullptr;
  int fd_ = -1;
  UvHandle<uv_poll_t> poll_;
  std::function<void()> on_ready_;
};

}  // namespace weir::kafka
