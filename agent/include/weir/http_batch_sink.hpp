// The engine of sinks that write batches of rows to an HTTP service (ClickHouse, InfluxDB):
// batching, encoding on the thread pool, requests in flight, retries with backoff, and
// isolating the rows a server refuses. A concrete sink supplies how a row is written
// (RowEncoder), what a request looks like and what an answer means (BatchSink's hooks).
//
// Rows collect into an upload until batch.max_events, batch.max_bytes or batch.timeout;
// each batch's rows are encoded into the upload on the thread pool as the batch arrives, and
// a sealed upload's wire body (compressed, or transposed by the encoder) made there too, by a
// job of its own beside the next upload's encoding, so the loop's core only gathers batches
// and sends; up to
// request.concurrency uploads are in flight. What an answer means (Verdict):
// - delivered: the uploads' acknowledgements are released;
// - retry (transport errors, overload, timeouts): the same rows, in the same order, under the
//   same upload id, after an exponential backoff with jitter (or the server's Retry-After);
// - bad rows: the upload is split in halves until the bad rows are alone; each is
//   dead-lettered with the server's message and the rest is written;
// - some rows refused: the server wrote the others and named these: they are dead-lettered;
// - setup (credentials, unknown table or database): a clear error in the log and metrics, the
//   rows kept and retried at the longest backoff until an operator fixes it.
// The sink holds a bounded number of rows; past that it stops taking batches and the
// runtime's input buffer (buffer.max_events, when_full) applies backpressure upstream.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "weir/buffer.hpp"
#include "weir/component.hpp"
#include "weir/http_client.hpp"
#include "weir/options.hpp"
#include "weir/uv.hpp"

namespace weir::http {

// Defaults of the options every batch sink has (they differ per service).
struct BatchSinkDefaults {
  std::string max_events = "10000";
  std::string max_bytes = "10MiB";
  std::string timeout = "1s";
  std::string concurrency = "2";
  std::string compression = "auto";
};

// batch.*, request.* and compression: appended to a sink's own option schema.
OptionSchema batch_sink_options(const BatchSinkDefaults& defaults);

struct BatchSinkSettings {
  std::vector<std::string> endpoints;  // base URLs (the sink's `endpoint` list), without a trailing '/'
  std::size_t max_events = 10000;
  std::uint64_t max_bytes = 10 << 20;
  std::uint64_t batch_timeout_ms = 1000;
  std::size_t concurrency = 2;
  std::chrono::milliseconds timeout{30000}, initial_backoff{500}, max_backoff{30000};
  // Endpoints are replicas of one table: a request that fails in transport, times out or
  // gets an overload/5xx answer goes at once to the next endpoint that is not failing.
  bool failover = false;
  std::string compression = "none";  // none | gzip | zstd (auto is resolved by from())

  // Reads `endpoint` (a list of http:// or https:// URLs) and the options of batch_sink_options().
  static Result<BatchSinkSettings> from(const Options& options);
};

// Writes events as the rows of a request body. Runs on the thread pool, one upload at a
// time, never concurrently with itself; it must not touch the loop.
class RowEncoder {
 public:
  virtual ~RowEncoder() = default;
  // Appends the event's row, ending in '\n', to `out`; or returns why it cannot be written,
  // leaving `out` as it was: the event is then dead-lettered with that reason.
  virtual Status encode_row(const Event& event, ByteBuffer& out) = 0;
  // What the encoder learned that must survive a restart (InfluxDB: each field's type), and
  // a number that changes whenever it does. The engine saves it (ComponentContext::save_state)
  // after an upload is encoded whenever the number moved, and restores it at start.
  virtual std::uint64_t state_version() const { return 0; }
  virtual std::string state() const { return {}; }
  virtual Status restore(std::string_view /*state*/) { return {}; }
  // The body to send for `upload`'s rows when it is not the rows themselves (a columnar
  // format made from them): written to `out`, true. Runs where encode_row runs.
  virtual bool wire_body(const struct Upload& /*upload*/, ByteBuffer& /*out*/) const { return false; }
};

// Rows of one batch that go into one upload.
struct BatchSlice {
  std::shared_ptr<EventBatch> batch;
  std::uint32_t from = 0, to = 0;
};

// An event the encoder could not write.
struct UnwritableEvent {
  std::uint32_t slice = 0, index = 0;  // slices[slice].batch->events()[index]
  std::string reason;
};

// The rows that go out in one HTTP request: the batch slices they come from, encoded into
// the body as they arrive, in order; and the acknowledgements of the batches. Batches are
// let go as soon as their rows are encoded (holding them would hold their input buffers
// too, and decoded events take about three times the memory of their encoded rows); a row refused on its own is dead-lettered from its text. A split upload
// shares its acknowledgements with its halves.
struct Upload {
  std::string id;  // stable across retries; the halves of a split get id + "/a" and "/b"
  // Rows read from a disk buffer, of consecutive event ids [first_event, end_event): the id
  // is then "<first>-<end>", the same for the same rows after a restart.
  bool event_ids = false;
  std::uint64_t first_event = 0, end_event = 0;
  std::size_t endpoint = 0;
  std::uint64_t serial = 0;             // which upload an encoding job belongs to (loop only)
  std::vector<BatchSlice> slices;       // taken, not yet encoded
  std::size_t rows = 0;                 // rows taken from the slices
  std::uint64_t input_bytes = 0;        // their size as the sources read them
  std::vector<UnwritableEvent> unwritable;
  std::shared_ptr<RowEncoder> encoder;  // the one that wrote `body` (a sink may change encoders)
  std::vector<std::uint32_t> row_ends;  // end of each encoded row in `body`
  ByteBuffer body;                      // uncompressed
  std::string compressed;               // the body as sent when compressed (the rows or the encoder's wire body), made once
  ByteBuffer wire;                      // the encoder's wire body as sent uncompressed, made once
  std::vector<AckRef> acks;
  int failures = 0;
  std::chrono::steady_clock::time_point not_before{};

  std::size_t encoded_rows() const { return row_ends.size(); }
  std::string_view row(std::size_t i) const;  // as encoded (a text row with its '\n')
  // What goes on the wire: the compressed body, else the encoder's wire body, else the rows.
  std::string_view sent_body(const std::string& /*compression*/) const {
    if (!compressed.empty()) return compressed;
    return wire.empty() ? body.view() : wire.view();
  }
};

enum class Outcome {
  Delivered,
  Retry,            // transport errors, overload, timeouts: send the same rows again later
  BadRows,          // some rows are bad (or the body is too large): split to find them
  SomeRowsRefused,  // the server wrote all rows but `refused_rows`
  Setup,            // auth, unknown table or database: log, keep the rows, retry slowly
  SendAgainNow,     // the sink changed how it sends (e.g. dropped a setting the server lacks)
};

struct Verdict {
  Outcome outcome = Outcome::Retry;
  std::string message;  // the server's reason (may be empty), or the transport error
  std::vector<std::uint32_t> refused_rows;  // SomeRowsRefused: indices into the upload's rows
};

class BatchSink : public Sink {
 public:
  Status start(SinkContext& ctx) final;
  void consume(BatchPtr batch) final;
  // Room for more rows, and the encoder has at most an upload's worth still to encode: rows
  // wait for it decoded, at about three times the memory of encoded rows (on one core a
  // fast pipeline ahead of the encoder piled up 40,000 of them).
  bool ready() const final { return held_rows_ < max_held_rows_ && unencoded_rows_ < settings_.max_events; }
  void drain(std::function<void()> done) final;
  void capture(const EventBatch& batch, ByteBuffer& out, std::vector<CaptureRejection>& rejected) final;
  ~BatchSink() override;

 protected:
  BatchSink(BatchSinkSettings settings, std::shared_ptr<RowEncoder> encoder);

  // After the client exists: healthchecks and the like.
  virtual Status on_start() { return {}; }
  // The request for an upload: method, url, headers, auth. The body, timeout and
  // Content-Encoding are filled in afterwards.
  virtual ClientRequest make_request(const Upload& upload) = 0;
  virtual Verdict classify(const Upload& upload, const ClientResponse& response) = 0;
  // What the log calls the destination, e.g. "insert into db.table".
  virtual std::string describe_write() const = 0;
  // The dead letter of a row of `upload` the server refused (its bytes as encoded; the
  // default writes a text row without its '\n'). False when it could not be written: the
  // upload's acknowledgements then fail.
  virtual bool dead_letter_row(const Upload& upload, std::string_view row, const std::string& reason);

  // Uploads begun from now on are encoded by `encoder` (one begun already keeps its own).
  void set_encoder(std::shared_ptr<RowEncoder> encoder) { encoder_ = std::move(encoder); }
  // While paused, sealed uploads wait unencoded (they count against the rows held, so the
  // sink stops taking batches when they fill up): e.g. until the server's schema is known.
  void pause_encoding() { encoding_paused_ = true; }
  void resume_encoding();

  SinkContext& context() { return *ctx_; }
  void save_encoder_state();
  Client& client() { return *client_; }
  const std::vector<std::string>& endpoints() const { return settings_.endpoints; }
  const BatchSinkSettings& settings() const { return settings_; }
  std::mt19937_64& rng() { return rng_; }

 private:
  struct EncodeJob;
  struct PrepareJob;
  void seal();
  void start_encoding();
  void encoded(EncodeJob& job);
  void start_preparing();
  void prepared(Upload upload);
  void pump();
  void send(Upload upload);
  void answered(Upload upload, const ClientResponse& response);
  void delivered(const Upload& upload, std::size_t refused);
  void retry(Upload upload, const Verdict& verdict, const ClientResponse& response, bool setup);
  void bad_rows(Upload upload, const Verdict& verdict);
  void fail_upload(Upload& upload, const std::string& reason);
  void some_rows_refused(Upload upload, const Verdict& verdict);
  void check_drained();
  void reuse_body(ByteBuffer body);

  BatchSinkSettings settings_;
  std::shared_ptr<RowEncoder> encoder_;
  std::uint64_t saved_encoder_version_ = 0;
  SinkContext* ctx_ = nullptr;
  std::unique_ptr<Client> client_;
  std::mt19937_64 rng_;
  std::size_t max_held_rows_;
  std::uint64_t encode_reserve_ = 1 << 20;  // about what the last upload needed
  Upload filling_;
  std::uint64_t last_serial_ = 0;
  std::deque<Upload> to_encode_;  // sealed, not yet wholly encoded (or their wire body not made)
  EncodeJob* encoding_ = nullptr;  // the upload being encoded
  std::deque<Upload> to_prepare_;  // wholly encoded, waiting for their wire body
  PrepareJob* preparing_ = nullptr;
  std::deque<Upload> waiting_;     // encoded, not yet sent (or waiting to be retried)
  std::vector<ByteBuffer> spare_bodies_;  // buffers of delivered uploads, for the next ones
  std::size_t in_flight_ = 0;
  std::size_t held_rows_ = 0;
  std::size_t unencoded_rows_ = 0;  // taken into uploads, not yet through an encoding job
  std::uint64_t next_sequence_ = 0;
  std::size_t next_endpoint_ = 0;
  // failover: each endpoint's requests failed in a row, and until when it is passed over
  // (a backoff that grows with them); an endpoint that takes an upload is cleared.
  struct EndpointHealth {
    int failures = 0;
    std::chrono::steady_clock::time_point failing_until{};
  };
  std::vector<EndpointHealth> endpoint_health_;
  // initial_backoff doubled per failure after the first, at most max_backoff, times a jitter
  // over its upper half (so the retries of many agents spread out).
  std::chrono::milliseconds backoff_after(int failures);
  // The first endpoint from `from` on (cyclically) that is not failing; `from` when all are.
  std::size_t usable_endpoint(std::size_t from) const;
  UvTimer flush_timer_, retry_timer_;
  bool flush_timer_armed_ = false;
  bool problem_reported_ = false;
  bool draining_ = false;
  bool encoding_paused_ = false;
  std::function<void()> drain_done_;
};

}  // namespace weir::http
