#include "weir/http_batch_sink.hpp"

#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "weir/compression.hpp"
#include "weir/log.hpp"

namespace weir::http {

OptionSchema batch_sink_options(const BatchSinkDefaults& d) {
  return {
      {.name = "batch.max_events", .type = OptionType::Integer, .default_value = d.max_events, .doc = "Rows per request."},
      {.name = "batch.max_bytes", .type = OptionType::Bytes, .default_value = d.max_bytes,
       .doc = "Bytes per request, counted on the rows as the sources read them (the encoded rows are about as "
              "large, or smaller when only some fields are sent)."},
      {.name = "batch.timeout", .type = OptionType::Duration, .default_value = d.timeout,
       .doc = "Longest a row waits for its request to fill up."},
      {.name = "request.concurrency", .type = OptionType::Integer, .default_value = d.concurrency,
       .doc = "Requests in flight."},
      {.name = "request.timeout", .type = OptionType::Duration, .default_value = "30s", .doc = "Per request."},
      {.name = "request.retry_initial_backoff", .type = OptionType::Duration, .default_value = "500ms",
       .doc = "First wait before a retry; doubles on each failure of the same request, with jitter."},
      {.name = "request.retry_max_backoff", .type = OptionType::Duration, .default_value = "30s",
       .doc = "Longest wait between retries (also the wait after setup errors such as a wrong password)."},
      {.name = "request.failover", .type = OptionType::Bool, .default_value = "false",
       .doc = "For endpoints that are replicas of one table (ReplicatedMergeTree): a request that fails in a way "
              "worth retrying (transport error, timeout, overload, 5xx) goes at once to the next endpoint, "
              "and new requests pass over a failing endpoint until its backoff is over. Off, a retried request "
              "stays on its endpoint: with independent servers, an insert that timed out after the server wrote "
              "it would be written twice, once on each."},
      {.name = "compression", .type = OptionType::Enum, .default_value = d.compression,
       .choices = {"auto", "none", "gzip", "zstd"},
       .doc = "Request body compression (Content-Encoding). `auto`: none when every endpoint is on this machine "
              "(a sidecar: compressing costs both sides CPU and saves no network), else gzip (what every "
              "ClickHouse and InfluxDB takes; zstd needs a newer server than Debian's)."},
  };
}

Result<BatchSinkSettings> BatchSinkSettings::from(const Options& o) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  BatchSinkSettings s;
  s.endpoints = o.strings("endpoint");
  if (s.endpoints.empty()) return o.error_at("endpoint", "endpoint needs at least one URL");
  for (std::string& e : s.endpoints) {
    if (!e.starts_with("http://") && !e.starts_with("https://")) {
      return o.error_at("endpoint", fmt::format("endpoint '{}' must start with http:// or https://", e));
    }
    while (!e.empty() && e.back() == '/') e.pop_back();
  }
  if (o.integer("batch.max_events") < 1) return o.error_at("batch.max_events", "batch.max_events must be at least 1");
  s.max_events = static_cast<std::size_t>(o.integer("batch.max_events"));
  s.max_bytes = o.bytes("batch.max_bytes");
  s.batch_timeout_ms = std::max<std::uint64_t>(
      1, static_cast<std::uint64_t>(duration_cast<milliseconds>(o.duration("batch.timeout")).count()));
  if (o.integer("request.concurrency") < 1) {
    return o.error_at("request.concurrency", "request.concurrency must be at least 1");
  }
  s.concurrency = static_cast<std::size_t>(o.integer("request.concurrency"));
  s.timeout = duration_cast<milliseconds>(o.duration("request.timeout"));
  s.initial_backoff = duration_cast<milliseconds>(o.duration("request.retry_initial_backoff"));
  s.max_backoff = std::max(s.initial_backoff, duration_cast<milliseconds>(o.duration("request.retry_max_backoff")));
  s.failover = o.boolean("request.failover");
  s.compression = std::string(o.string("compression"));
  if (s.compression == "auto") {
    bool all_loopback = std::all_of(s.endpoints.begin(), s.endpoints.end(), [](const std::string& url) {
      return url_host_is_loopback(url);
    });
    s.compression = all_loopback ? "none" : "gzip";
  }
  return s;
}

std::string_view Upload::row(std::size_t i) const {
  std::uint32_t start = i == 0 ? 0 : row_ends[i - 1];
  return body.view().substr(start, row_ends[i] - start);
}

namespace {

// Makes what goes on the wire, once per upload. Without compression that is the encoded
// rows themselves (a copy of 10 MiB per request cost as much as encoding a field).
void prepare_for_sending(const std::string& compression, Upload& upload) {
  if (!upload.compressed.empty() || !upload.wire.empty()) return;  // made already (a body as sent is never empty)
  std::string_view rows = upload.body.view();
  ByteBuffer wire;
  if (upload.encoder && upload.encoder->wire_body(upload, wire)) rows = wire.view();
  if (compression == "gzip") upload.compressed = compression::gzip_compress(rows, 1);
  else if (compression == "zstd") upload.compressed = compression::zstd_compress(rows, 1);
  else if (!wire.empty()) upload.wire = std::move(wire);  // kept as made: a copy cost 2% of the CVAT pipeline
}

// Rows [from, to) of `whole` as an upload of their own (a half of a split).
Upload part_of(const Upload& whole, std::size_t from, std::size_t to, const char* tag) {
  Upload p;
  p.id = whole.id + "/" + tag;  // a distinct, still stable id per part
  p.event_ids = whole.event_ids;
  p.endpoint = whole.endpoint;
  p.acks = whole.acks;
  p.encoder = whole.encoder;
  std::uint32_t start = from == 0 ? 0 : whole.row_ends[from - 1];
  p.body.append(whole.body.view().substr(start, whole.row_ends[to - 1] - start));
  for (std::size_t i = from; i < to; ++i) p.row_ends.push_back(whole.row_ends[i] - start);
  p.rows = p.row_ends.size();
  return p;
}

std::string describe(const Verdict& verdict, int status) {
  if (status == 0) return verdict.message;  // the transport error
  if (verdict.message.empty()) return fmt::format("HTTP {}", status);
  return fmt::format("HTTP {}: {}", status, verdict.message);
}

}  // namespace

// Encodes the slices an upload took since the last job into its body (which the job holds
// meanwhile).
struct BatchSink::EncodeJob {
  uv_work_t work{};
  BatchSink* self = nullptr;  // nulled if the sink goes away first
  std::uint64_t serial = 0;   // the upload's
  std::uint64_t reserve = 0;
  Upload upload;  // the slices to encode, and the upload's body, row ends and encoder

  // On the thread pool.
  void run() {
    upload.body.reserve(reserve);
    for (std::uint32_t s = 0; s < upload.slices.size(); ++s) {
      const BatchSlice& slice = upload.slices[s];
      const std::vector<Event>& events = slice.batch->events();
      for (std::uint32_t i = slice.from; i < slice.to; ++i) {
        std::size_t before = upload.body.size();
        if (Status written = upload.encoder->encode_row(events[i], upload.body); !written.ok()) {
          upload.body.truncate(before);
          upload.unwritable.push_back(UnwritableEvent{s, i, written.error().message()});
          continue;
        }
        upload.row_ends.push_back(static_cast<std::uint32_t>(upload.body.size()));
      }
    }
  }
};

// Makes a sealed, wholly encoded upload's wire body (the encoder's, compressed). Runs beside
// the next upload's encoding: wire_body() reads only what the encoder fixed at its start.
struct BatchSink::PrepareJob {
  uv_work_t work{};
  BatchSink* self = nullptr;  // nulled if the sink goes away first
  std::string compression;
  Upload upload;

  void run() { prepare_for_sending(compression, upload); }  // on the thread pool
};

BatchSink::BatchSink(BatchSinkSettings settings, std::shared_ptr<RowEncoder> encoder)
    : settings_(std::move(settings)), encoder_(std::move(encoder)),
      // Rows held at most: the requests in flight plus one filling and one waiting.
      max_held_rows_(settings_.max_events * (settings_.concurrency + 2)) {
  if (settings_.failover && settings_.endpoints.size() > 1) endpoint_health_.resize(settings_.endpoints.size());
}

BatchSink::~BatchSink() {
  if (encoding_ != nullptr) encoding_->self = nullptr;  // its result is dropped when it lands
  if (preparing_ != nullptr) preparing_->self = nullptr;
}

Status BatchSink::start(SinkContext& ctx) {
  ctx_ = &ctx;
  client_ = std::make_unique<Client>(ctx.loop());
  if (auto saved = ctx.load_state(); !saved.ok()) {
    log::error(ctx.name(), "cannot read its saved state: {}", saved.error().message());
  } else if (saved.value()) {
    if (Status restored = encoder_->restore(*saved.value()); !restored.ok()) {
      ctx.metrics().errors.add();
      log::error(ctx.name(), "saved state not restored ({}): starting without it", restored.error().message());
    }
  }
  saved_encoder_version_ = encoder_->state_version();
  rng_.seed(ctx.random().next());
  return on_start();
}

void BatchSink::capture(const EventBatch& batch, ByteBuffer& out, std::vector<CaptureRejection>& rejected) {
  for (std::size_t i = 0; i < batch.events().size(); ++i) {
    Status written = encoder_->encode_row(batch.events()[i], out);
    if (!written.ok()) rejected.push_back({i, written.error().message()});
  }
}

void BatchSink::consume(BatchPtr batch) {
  std::shared_ptr<EventBatch> held(batch.release());
  // Every upload that gets rows of this batch holds a reference to each of its
  // acknowledgements: they are released when the last such upload is done.
  std::vector<AckRef> acks = held->take_acks();
  const std::size_t n = held->size();
  const std::uint64_t row_bytes = n > 0 && held->byte_size() > 0 ? std::max<std::uint64_t>(1, held->byte_size() / n) : 512;
  const std::optional<std::uint64_t> first_id = held->first_event_id();
  for (std::size_t at = 0; at < n;) {
    std::size_t take = std::min(n - at, settings_.max_events - filling_.rows);
    std::uint64_t room = settings_.max_bytes > filling_.input_bytes ? (settings_.max_bytes - filling_.input_bytes) / row_bytes : 0;
    take = std::max<std::size_t>(1, std::min<std::uint64_t>(take, std::max<std::uint64_t>(room, 1)));
    if (first_id) {
      // From a disk buffer: uploads end at event ids that are multiples of max_events, so
      // after a restart the same rows make the same upload (and the same id) again.
      std::uint64_t id = *first_id + at;
      take = std::min<std::size_t>(take, settings_.max_events - id % settings_.max_events);
      if (filling_.rows == 0) {
        filling_.event_ids = true;
        filling_.first_event = filling_.end_event = id;
      }
      if (filling_.event_ids && filling_.end_event == id) filling_.end_event = id + take;
      else filling_.event_ids = false;
    } else {
      filling_.event_ids = false;
    }
    filling_.slices.push_back(BatchSlice{held, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(at + take)});
    filling_.acks.insert(filling_.acks.end(), acks.begin(), acks.end());
    filling_.rows += take;
    filling_.input_bytes += take * row_bytes;
    held_rows_ += take;
    unencoded_rows_ += take;
    at += take;
    if (filling_.rows >= settings_.max_events || filling_.input_bytes >= settings_.max_bytes ||
        (filling_.event_ids && filling_.end_event % settings_.max_events == 0)) {
      seal();
    }
  }
  start_encoding();
  if (filling_.rows > 0 && !flush_timer_armed_) {
    flush_timer_armed_ = true;
    start_timer(flush_timer_, ctx_->loop(), this, [](uv_timer_t* t) {
      auto* self = static_cast<BatchSink*>(t->data);
      self->flush_timer_armed_ = false;
      self->seal();
    }, settings_.batch_timeout_ms);
  }
  pump();
}

void BatchSink::drain(std::function<void()> done) {
  draining_ = true;
  drain_done_ = std::move(done);
  seal();  // and pump(), which checks whether everything is delivered
}

// The filling upload is complete: encode it (on the thread pool), then queue it.
void BatchSink::seal() {
  if (flush_timer_armed_) {
    uv_timer_stop(flush_timer_.get());
    flush_timer_armed_ = false;
  }
  if (filling_.rows == 0) {
    pump();
    return;
  }
  Upload upload = std::move(filling_);
  filling_ = Upload{};
  filling_.serial = ++last_serial_;
  upload.id = upload.event_ids ? fmt::format("{}-{}", upload.first_event, upload.end_event)
                               : fmt::format("{}", next_sequence_++);
  upload.endpoint = next_endpoint_++ % settings_.endpoints.size();  // (failover: send() passes over a failing one)
  to_encode_.push_back(std::move(upload));
  start_encoding();
}

std::size_t BatchSink::usable_endpoint(std::size_t from) const {
  if (endpoint_health_.empty()) return from;
  auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < endpoint_health_.size(); ++i) {
    std::size_t e = (from + i) % endpoint_health_.size();
    if (endpoint_health_[e].failing_until <= now) return e;
  }
  return from;
}

void BatchSink::resume_encoding() {
  encoding_paused_ = false;
  start_encoding();
  pump();
}

// Batches are encoded as they arrive, not when their upload is sealed: a batch is let go
// once its rows are in the upload's body, so the sink holds encoded rows (about a third of
// the memory of decoded events) rather than up to max_events x (concurrency + 2) events.
// One job at a time, oldest upload first: an encoder sees rows in order. A sealed upload
// whose rows are all in has its wire body made by a job of its own (compressing took as long
// as encoding, and batches waited behind it, decoded, for the encoder).
void BatchSink::start_encoding() {
  if (encoding_ != nullptr) return;  // it may hold the body of the oldest sealed upload
  while (!to_encode_.empty() && to_encode_.front().slices.empty()) {
    Upload& done = to_encode_.front();
    encode_reserve_ = std::max<std::uint64_t>(64 << 10, done.body.size() + done.body.size() / 8);
    if (!done.row_ends.empty()) to_prepare_.push_back(std::move(done));
    // else: nothing to send; dropping the upload releases its acknowledgements
    to_encode_.pop_front();
  }
  start_preparing();
  if (encoding_paused_) return;
  // A sealed upload first (the rest of its rows), else the filling one.
  Upload* target = to_encode_.empty() ? &filling_ : &to_encode_.front();
  if (target->slices.empty()) return;
  if (!target->encoder) target->encoder = encoder_;  // an upload is written by one encoder throughout
  auto job = std::make_unique<EncodeJob>();
  job->work.data = job.get();
  job->self = this;
  job->serial = target->serial;
  job->upload.encoder = target->encoder;
  job->upload.slices = std::move(target->slices);
  target->slices.clear();
  job->upload.row_ends = std::move(target->row_ends);
  target->row_ends.clear();
  if (target->body.capacity() == 0 && !spare_bodies_.empty()) {
    target->body = std::move(spare_bodies_.back());
    spare_bodies_.pop_back();
  }
  if (target->body.capacity() == 0) job->reserve = encode_reserve_;
  job->upload.body = std::move(target->body);
  int rc = uv_queue_work(
      ctx_->loop(), &job->work, [](uv_work_t* w) { static_cast<EncodeJob*>(w->data)->run(); },
      [](uv_work_t* w, int) {
        std::unique_ptr<EncodeJob> j(static_cast<EncodeJob*>(w->data));
        if (j->self != nullptr) j->self->encoded(*j);
      });
  if (rc == 0) {
    encoding_ = job.release();
    return;
  }
  // No thread pool: encode here.
  job->run();
  encoding_ = job.get();
  encoded(*job);
}

void BatchSink::encoded(EncodeJob& job) {
  encoding_ = nullptr;
  const bool was_ready = ready();
  for (const BatchSlice& slice : job.upload.slices) unencoded_rows_ -= slice.to - slice.from;
  // The upload is where the job found it, or sealed since (then the oldest of to_encode_:
  // the job took the filling one only while none was sealed).
  if (filling_.serial != job.serial && (to_encode_.empty() || to_encode_.front().serial != job.serial)) {
    log::error(ctx_->name(), "an encoded piece found no upload (serial {}): a bug, its rows are lost", job.serial);
    ctx_->metrics().errors.add();
    if (!was_ready && ready()) ctx_->ready_again();
    return;
  }
  Upload& upload = filling_.serial == job.serial ? filling_ : to_encode_.front();
  upload.body = std::move(job.upload.body);
  upload.row_ends = std::move(job.upload.row_ends);
  for (const UnwritableEvent& bad : job.upload.unwritable) {
    const Event& event = job.upload.slices[bad.slice].batch->events()[bad.index];
    if (!ctx_->dead_letter(event, fmt::format("{}: {}", ctx_->type(), bad.reason))) fail_upload(upload, bad.reason);
    ctx_->metrics().errors.add();
  }
  held_rows_ -= job.upload.unwritable.size();
  save_encoder_state();
  job.upload.slices.clear();  // the batches (and their input buffers) go, on the loop
  start_encoding();
  pump();
  if (!was_ready && ready()) ctx_->ready_again();
}

void BatchSink::start_preparing() {
  if (preparing_ != nullptr || to_prepare_.empty()) return;
  auto job = std::make_unique<PrepareJob>();
  job->work.data = job.get();
  job->self = this;
  job->compression = settings_.compression;
  job->upload = std::move(to_prepare_.front());
  to_prepare_.pop_front();
  int rc = uv_queue_work(
      ctx_->loop(), &job->work, [](uv_work_t* w) { static_cast<PrepareJob*>(w->data)->run(); },
      [](uv_work_t* w, int) {
        std::unique_ptr<PrepareJob> j(static_cast<PrepareJob*>(w->data));
        if (j->self != nullptr) j->self->prepared(std::move(j->upload));
      });
  if (rc == 0) {
    preparing_ = job.release();
    return;
  }
  job->run();  // no thread pool: here
  preparing_ = job.get();
  prepared(std::move(job->upload));
}

void BatchSink::prepared(Upload upload) {
  preparing_ = nullptr;
  waiting_.push_back(std::move(upload));  // in sealing order: one is prepared at a time
  start_preparing();
  pump();
}

void BatchSink::pump() {
  auto now = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point earliest = std::chrono::steady_clock::time_point::max();
  for (auto it = waiting_.begin(); it != waiting_.end() && in_flight_ < settings_.concurrency;) {
    if (it->not_before > now) {
      earliest = std::min(earliest, it->not_before);
      ++it;
      continue;
    }
    send(std::move(*it));
    it = waiting_.erase(it);
  }
  for (const Upload& upload : waiting_) {
    if (upload.not_before > now) earliest = std::min(earliest, upload.not_before);
  }
  if (earliest != std::chrono::steady_clock::time_point::max()) {
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - now).count() + 1;
    start_timer(retry_timer_, ctx_->loop(), this, [](uv_timer_t* t) { static_cast<BatchSink*>(t->data)->pump(); },
                static_cast<std::uint64_t>(std::max<std::int64_t>(1, wait)));
  }
  check_drained();
}

void BatchSink::send(Upload upload) {
  prepare_for_sending(settings_.compression, upload);  // done already unless a split part
  // Failover: an upload for a failing endpoint (sealed for it, or failed over to it while
  // every endpoint was failing) goes to the next one that is not failing; with a dead
  // replica behind a timeout, each would otherwise wait it out.
  if (!endpoint_health_.empty()) upload.endpoint = usable_endpoint(upload.endpoint);
  ClientRequest request = make_request(upload);
  request.timeout = settings_.timeout;
  if (settings_.compression != "none") request.headers.push_back({"Content-Encoding", settings_.compression});
  ++in_flight_;
  auto shared = std::make_shared<Upload>(std::move(upload));
  // The upload lives in the callback, which the client holds until the answer: its buffers
  // do not move, so curl reads the body where it is.
  request.borrowed_body = shared->sent_body(settings_.compression);
  client_->send(std::move(request), [this, shared](ClientResponse response) {
    --in_flight_;
    answered(std::move(*shared), response);
  });
}

void BatchSink::answered(Upload upload, const ClientResponse& response) {
  const bool was_ready = ready();
  ComponentMetrics& m = ctx_->metrics();
  m.requests.add();
  m.request_latency_nanos_sum.add(static_cast<std::uint64_t>(response.seconds * 1e9));
  Verdict verdict = classify(upload, response);
  switch (verdict.outcome) {
    case Outcome::Delivered:
      delivered(upload, 0);
      reuse_body(std::move(upload.body));
      break;
    case Outcome::Retry: retry(std::move(upload), verdict, response, false); break;
    case Outcome::Setup: retry(std::move(upload), verdict, response, true); break;
    case Outcome::BadRows: bad_rows(std::move(upload), verdict); break;
    case Outcome::SomeRowsRefused: some_rows_refused(std::move(upload), verdict); break;
    case Outcome::SendAgainNow:
      upload.not_before = {};
      waiting_.push_front(std::move(upload));
      break;
  }
  pump();
  if (!was_ready && ready()) ctx_->ready_again();
}

void BatchSink::delivered(const Upload& upload, std::size_t refused) {
  ComponentMetrics& m = ctx_->metrics();
  m.events_sent.add(upload.encoded_rows() - refused);
  m.bytes_sent.add(upload.body.size());
  held_rows_ -= upload.encoded_rows();
  if (!endpoint_health_.empty()) endpoint_health_[upload.endpoint] = {};
  m.recovered();
  if (problem_reported_) {
    log::info(ctx_->name(), "{} succeeds again", describe_write());
    problem_reported_ = false;
  }
  // Dropping the upload releases its acknowledgement references: delivered.
}

void BatchSink::retry(Upload upload, const Verdict& verdict, const ClientResponse& response, bool setup) {
  ComponentMetrics& m = ctx_->metrics();
  m.errors.add();
  m.request_retries.add();
  ++upload.failures;
  // After a setup error (a wrong password, no such table) the longest wait: someone must act.
  auto wait = backoff_after(setup ? std::numeric_limits<int>::max() : upload.failures);
  if (const std::string* after = response.header("retry-after")) {
    char* end = nullptr;
    long seconds = std::strtol(after->c_str(), &end, 10);
    if (end != after->c_str() && seconds > 0) wait = std::max(wait, std::chrono::milliseconds(seconds * 1000));
  }
  std::string what = describe(verdict, response.status);
  m.retrying(uv_now(ctx_->loop()), fmt::format("{} at {}: {}", describe_write(), settings_.endpoints[upload.endpoint], what));
  auto now = std::chrono::steady_clock::now();
  std::size_t next = upload.endpoint;
  if (!endpoint_health_.empty() && !setup) {
    // Failover: this endpoint is passed over for a backoff that grows while it keeps
    // failing; the rows go at once to the next endpoint that is not failing, or, when every
    // one is, to the next after the upload's own wait.
    EndpointHealth& failed = endpoint_health_[upload.endpoint];
    failed.failing_until = now + backoff_after(++failed.failures);
    next = usable_endpoint((upload.endpoint + 1) % settings_.endpoints.size());
    if (endpoint_health_[next].failing_until <= now) {
      log::warn(ctx_->name(), "{} of {} rows at {} failed ({}); sending them to {}", describe_write(), upload.encoded_rows(),
                settings_.endpoints[upload.endpoint], what, settings_.endpoints[next]);
      upload.endpoint = next;
      upload.not_before = {};
      waiting_.push_front(std::move(upload));
      return;
    }
  }
  if (setup) {
    log::error(ctx_->name(), "{} at {} refused ({}); {} rows kept, retrying in {} ms", describe_write(),
               settings_.endpoints[upload.endpoint], what, upload.encoded_rows(), wait.count());
    problem_reported_ = true;
  } else if (upload.failures == 1 || upload.failures % 10 == 0) {
    log::warn(ctx_->name(), "{} of {} rows at {} failed ({}), attempt {}; retrying in {} ms{}", describe_write(),
              upload.encoded_rows(), settings_.endpoints[upload.endpoint], what, upload.failures, wait.count(),
              next == upload.endpoint ? "" : " at " + settings_.endpoints[next]);
  }
  upload.endpoint = next;
  upload.not_before = now + wait;
  waiting_.push_front(std::move(upload));
}

std::chrono::milliseconds BatchSink::backoff_after(int failures) {
  std::chrono::milliseconds backoff = settings_.initial_backoff * (std::int64_t{1} << std::clamp(failures - 1, 0, 20));
  if (backoff > settings_.max_backoff) backoff = settings_.max_backoff;
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(backoff.count()) * jitter(rng_)));
}

// Halve until each bad row is alone, dead-letter it, write the rest.
void BatchSink::bad_rows(Upload upload, const Verdict& verdict) {
  ctx_->metrics().errors.add();
  std::size_t rows = upload.encoded_rows();
  if (rows == 1) {
    if (!dead_letter_row(upload, upload.row(0), verdict.message)) fail_upload(upload, verdict.message);
    held_rows_ -= 1;
    ctx_->hold_until_dead_letters_written(upload.acks);
    return;  // a dead letter counts as delivered for the acknowledgements, once it is in the file
  }
  if (upload.id.find('/') == std::string::npos) {
    log::warn(ctx_->name(), "{} refused {} rows at {} ({}); splitting them to find the bad rows", describe_write(), rows,
              settings_.endpoints[upload.endpoint], verdict.message.empty() ? "no reason given" : verdict.message);
  }
  std::size_t half = rows / 2;
  Upload first = part_of(upload, 0, half, "a");
  Upload second = part_of(upload, half, rows, "b");
  reuse_body(std::move(upload.body));
  waiting_.push_front(std::move(second));
  waiting_.push_front(std::move(first));
}

void BatchSink::some_rows_refused(Upload upload, const Verdict& verdict) {
  ctx_->metrics().errors.add();
  std::vector<std::uint32_t> refused = verdict.refused_rows;
  std::sort(refused.begin(), refused.end());
  refused.erase(std::unique(refused.begin(), refused.end()), refused.end());
  std::size_t counted = 0;
  for (std::uint32_t i : refused) {
    if (i >= upload.encoded_rows()) continue;
    if (!dead_letter_row(upload, upload.row(i), verdict.message)) fail_upload(upload, verdict.message);
    ++counted;
  }
  log::warn(ctx_->name(), "{} at {} refused {} of {} rows ({}); they are dead-lettered, the rest was written",
            describe_write(), settings_.endpoints[upload.endpoint], counted, upload.encoded_rows(), verdict.message);
  ctx_->hold_until_dead_letters_written(upload.acks);
  delivered(upload, counted);
  reuse_body(std::move(upload.body));
}

// A delivered upload's buffer is the next upload's: a fresh buffer of several MiB costs a
// page fault per 4 KiB as the encoder fills it (over half of all page faults of the
// ClickHouse benchmark). Up to one per request in flight, plus one being encoded, are kept.
void BatchSink::reuse_body(ByteBuffer body) {
  if (spare_bodies_.size() > settings_.concurrency) return;
  body.clear();
  spare_bodies_.push_back(std::move(body));
}

// On the loop, with no encoding in flight: the encoder is ours to read.
void BatchSink::save_encoder_state() {
  std::uint64_t version = encoder_->state_version();
  if (version == saved_encoder_version_) return;
  saved_encoder_version_ = version;
  if (Status saved = ctx_->save_state(encoder_->state()); !saved.ok()) {
    ctx_->metrics().errors.add();
    log::error(ctx_->name(), "cannot save its state: {}", saved.error().message());
  }
}

bool BatchSink::dead_letter_row(const Upload&, std::string_view row, const std::string& reason) {
  while (!row.empty() && row.back() == '\n') row.remove_suffix(1);
  return ctx_->dead_letter_raw(row, 0, fmt::format("{}: {}", ctx_->type(), reason));
}

void BatchSink::fail_upload(Upload& upload, const std::string& reason) {
  for (auto& ack : upload.acks) ack->fail("a dead letter could not be written (" + reason + ")");
}

void BatchSink::check_drained() {
  if (!draining_ || !drain_done_) return;
  if (filling_.rows > 0) seal();
  if (!waiting_.empty() || in_flight_ > 0 || filling_.rows > 0 || !to_encode_.empty() || encoding_ != nullptr ||
      !to_prepare_.empty() || preparing_ != nullptr) {
    return;
  }
  auto done = std::move(drain_done_);
  drain_done_ = nullptr;
  done();
}

}  // namespace weir::http
