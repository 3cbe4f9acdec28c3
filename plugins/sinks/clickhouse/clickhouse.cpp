// `clickhouse` sink: rows inserted over ClickHouse's HTTP interface as JSONEachRow, through
// libcurl's multi interface on the loop (weir/http_client.hpp).
//
// Rows collect into an insert until batch.max_events, batch.max_bytes or batch.timeout;
// rows are encoded (and compressed) on the thread pool, so the loop's core only gathers
// batches and sends; up to request.concurrency inserts are in flight. What an answer means (errors.hpp):
// - delivered: the inserts' acknowledgements are released;
// - retry (transport errors, overload, timeouts): the same rows, in the same order, with
//   the same insert_deduplication_token, after an exponential backoff with jitter (or the
//   server's Retry-After), for as long as it takes;
// - bad rows (parse and type errors): the insert is split in halves until the bad rows are
//   alone; each is dead-lettered with the server's message and the rest is inserted;
// - setup (credentials, unknown table): a clear error in the log and the metrics, the rows
//   kept and retried at the longest backoff until an operator fixes it.
// The sink holds a bounded number of rows; past that it stops taking batches and the
// runtime's input buffer (buffer.max_events, when_full) applies backpressure upstream.
#include <chrono>
#include <deque>
#include <random>

#include <fmt/format.h>

#include "errors.hpp"
#include "weir/compression.hpp"
#include "weir/field_path.hpp"
#include "weir/http_client.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/time.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace {

using clickhouse::Outcome;
using clickhouse::Verdict;

const OptionSchema kSchema = {
    {.name = "endpoint", .type = OptionType::StringList, .required = true,
     .doc = "ClickHouse HTTP endpoint(s), e.g. http://localhost:8123; with several, inserts take turns and a "
            "retried insert stays on its endpoint (so deduplication applies there)."},
    {.name = "database", .type = OptionType::String, .default_value = "default", .doc = "Database of the table."},
    {.name = "table", .type = OptionType::String, .required = true, .doc = "Table to insert into."},
    {.name = "auth.user", .type = OptionType::String, .doc = "User (HTTP basic auth); use ${ENV} for secrets."},
    {.name = "auth.password", .type = OptionType::String, .doc = "Password; never logged."},
    {.name = "format", .type = OptionType::Enum, .default_value = "JSONEachRow", .choices = {"JSONEachRow"},
     .doc = "Insert format."},
    {.name = "encoding.only_fields", .type = OptionType::StringList,
     .doc = "Send only these fields (paths), as columns of the same name (CVAT lists its 17 columns)."},
    {.name = "skip_unknown_fields", .type = OptionType::Bool, .default_value = "false",
     .doc = "input_format_skip_unknown_fields=1: fields that are not columns are ignored instead of failing."},
    {.name = "date_time_best_effort", .type = OptionType::Bool, .default_value = "false",
     .doc = "date_time_input_format=best_effort: DateTime columns accept ISO-8601 and more."},
    {.name = "batch.max_events", .type = OptionType::Integer, .default_value = "10000", .doc = "Rows per insert."},
    {.name = "batch.max_bytes", .type = OptionType::Bytes, .default_value = "10MiB",
     .doc = "Bytes per insert, counted on the rows as the sources read them (the encoded rows are about as large, "
            "or smaller with only_fields)."},
    {.name = "batch.timeout", .type = OptionType::Duration, .default_value = "1s",
     .doc = "Longest a row waits for its insert to fill up."},
    {.name = "request.concurrency", .type = OptionType::Integer, .default_value = "2", .doc = "Inserts in flight."},
    {.name = "request.timeout", .type = OptionType::Duration, .default_value = "30s", .doc = "Per insert request."},
    {.name = "request.retry_initial_backoff", .type = OptionType::Duration, .default_value = "500ms",
     .doc = "First wait before a retry; doubles on each failure of the same insert, with jitter."},
    {.name = "request.retry_max_backoff", .type = OptionType::Duration, .default_value = "30s",
     .doc = "Longest wait between retries (also the wait after setup errors such as a wrong password)."},
    {.name = "compression", .type = OptionType::Enum, .default_value = "gzip", .choices = {"none", "gzip", "zstd"},
     .doc = "Request body compression (Content-Encoding)."},
    {.name = "deduplication_token", .type = OptionType::Bool, .default_value = "true",
     .doc = "Send insert_deduplication_token, stable across retries of an insert, so replicated tables drop "
            "duplicates; turned off by itself (with a warning) on servers that do not know the setting."},
    {.name = "healthcheck.enabled", .type = OptionType::Bool, .default_value = "true",
     .doc = "At start, check GET /ping and that the table exists; failures are warnings."},
    {.name = "healthcheck.required", .type = OptionType::Bool, .default_value = "false",
     .doc = "Refuse to start when the healthcheck fails."},
};

// A quoted identifier for the query text: `name`, with ` and \ escaped.
std::string quoted_identifier(std::string_view name) {
  std::string out = "`";
  for (char c : name) {
    if (c == '`' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('`');
  return out;
}

// Rows of one batch that go into one insert.
struct Slice {
  std::shared_ptr<EventBatch> batch;
  std::uint32_t from = 0, to = 0;
};

// One INSERT: first the batch slices its rows come from, then (once encoded on the thread
// pool) its rows as text, in order; and the acknowledgements of the batches. Batches are
// let go as soon as their rows are encoded (holding them would hold their input buffers
// too); a row refused on its own is decoded again for its dead letter. A split insert
// shares its acknowledgements with its halves.
struct Insert {
  std::string token;      // insert_deduplication_token: stable across retries
  std::size_t endpoint = 0;
  std::vector<Slice> slices;            // before encoding
  std::size_t rows = 0;
  std::uint64_t input_bytes = 0;        // the rows' size as the sources read them
  std::vector<std::uint32_t> row_ends;  // end of each row in `body`; one per row
  ByteBuffer body;                       // JSONEachRow, uncompressed
  std::shared_ptr<const std::string> sent_body;  // as sent (compressed), made once
  std::vector<AckRef> acks;
  int failures = 0;
  std::chrono::steady_clock::time_point not_before{};
};

// Turns an insert's slices into JSONEachRow text, compressed as configured. Runs on the
// thread pool, one insert at a time (its FieldPath hints are not shared between threads).
struct Encoder {
  std::vector<FieldPath> only_fields;
  std::vector<std::string> field_keys;  // `"name":` of each only_fields entry
  std::string compression;
  std::uint64_t reserve = 1 << 20;      // about what the last insert needed

  void encode(Insert& insert) {
    insert.body.reserve(reserve);
    insert.row_ends.reserve(insert.rows);
    for (const Slice& slice : insert.slices) {
      const std::vector<Event>& events = slice.batch->events();
      for (std::uint32_t i = slice.from; i < slice.to; ++i) {
        encode_row(events[i], insert.body);
        insert.row_ends.push_back(static_cast<std::uint32_t>(insert.body.size()));
      }
    }
    reserve = std::max<std::uint64_t>(64 << 10, insert.body.size() + insert.body.size() / 8);
    insert.sent_body = compress(insert.body.view());
  }

  std::shared_ptr<const std::string> compress(std::string_view body) const {
    if (compression == "gzip") return std::make_shared<std::string>(compression::gzip_compress(body, 3));
    if (compression == "zstd") return std::make_shared<std::string>(compression::zstd_compress(body, 1));
    return std::make_shared<std::string>(body);
  }

  void encode_row(const Event& event, ByteBuffer& out) {
    if (only_fields.empty()) {
      write_json(event.fields, out);
    } else {
      out.push_back('{');
      bool first = true;
      for (std::size_t i = 0; i < only_fields.size(); ++i) {
        const Value* v = only_fields[i].find(event.fields);
        if (v == nullptr) continue;  // absent: the column's default
        if (!first) out.push_back(',');
        first = false;
        out.append(field_keys[i]);
        write_json(*v, out);
      }
      out.push_back('}');
    }
    out.push_back('\n');
  }
};

class ClickHouseSink final : public Sink {
 public:
  static Result<std::unique_ptr<ClickHouseSink>> create(const Options& o) {
    auto self = std::make_unique<ClickHouseSink>();
    self->endpoints_ = o.strings("endpoint");
    if (self->endpoints_.empty()) return o.error_at("endpoint", "endpoint needs at least one URL");
    for (std::string& e : self->endpoints_) {
      if (!e.starts_with("http://") && !e.starts_with("https://")) {
        return o.error_at("endpoint", fmt::format("endpoint '{}' must start with http:// or https://", e));
      }
      while (!e.empty() && e.back() == '/') e.pop_back();
    }
    self->database_ = std::string(o.string("database"));
    self->table_ = std::string(o.string("table"));
    if (self->table_.empty()) return o.error_at("table", "table must not be empty");
    self->user_ = std::string(o.string("auth.user"));
    self->password_ = std::string(o.string("auth.password"));
    self->encoder_ = std::make_shared<Encoder>();
    for (const std::string& field : o.strings("encoding.only_fields")) {
      self->encoder_->only_fields.emplace_back(field);
      ByteBuffer key;
      write_json_string(field, key);
      key.push_back(':');
      self->encoder_->field_keys.emplace_back(key.view());
    }
    self->max_events_ = static_cast<std::size_t>(o.integer("batch.max_events"));
    if (o.integer("batch.max_events") < 1) return o.error_at("batch.max_events", "batch.max_events must be at least 1");
    self->max_bytes_ = o.bytes("batch.max_bytes");
    self->batch_timeout_ms_ = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(o.duration("batch.timeout")).count()));
    if (o.integer("request.concurrency") < 1) {
      return o.error_at("request.concurrency", "request.concurrency must be at least 1");
    }
    self->concurrency_ = static_cast<std::size_t>(o.integer("request.concurrency"));
    self->timeout_ = std::chrono::duration_cast<std::chrono::milliseconds>(o.duration("request.timeout"));
    self->initial_backoff_ = std::chrono::duration_cast<std::chrono::milliseconds>(o.duration("request.retry_initial_backoff"));
    self->max_backoff_ = std::chrono::duration_cast<std::chrono::milliseconds>(o.duration("request.retry_max_backoff"));
    if (self->max_backoff_ < self->initial_backoff_) self->max_backoff_ = self->initial_backoff_;
    self->compression_ = std::string(o.string("compression"));
    self->encoder_->compression = self->compression_;
    self->use_token_ = o.boolean("deduplication_token");
    self->healthcheck_ = o.boolean("healthcheck.enabled");
    self->healthcheck_required_ = o.boolean("healthcheck.required");
    // Rows held at most: the inserts in flight plus one filling and one waiting.
    self->max_held_rows_ = self->max_events_ * (self->concurrency_ + 2);

    std::string query = fmt::format("INSERT INTO {}.{} FORMAT JSONEachRow", quoted_identifier(self->database_),
                                    quoted_identifier(self->table_));
    self->query_params_ = "/?query=" + http::url_encode(query);
    if (o.boolean("skip_unknown_fields")) self->query_params_ += "&input_format_skip_unknown_fields=1";
    if (o.boolean("date_time_best_effort")) self->query_params_ += "&date_time_input_format=best_effort";
    return self;
  }

  Status start(SinkContext& ctx) override {
    ctx_ = &ctx;
    client_ = std::make_unique<http::Client>(ctx.loop());
    std::random_device seed;
    rng_.seed(seed());
    token_prefix_ = fmt::format("weir-{}-{:016x}", ctx.name(), rng_());
    if (healthcheck_ && healthcheck_required_) {
      if (Status checked = check_blocking(); !checked.ok()) return checked;
    } else if (healthcheck_) {
      check_async();
    }
    return {};
  }

  void consume(BatchPtr batch) override {
    std::shared_ptr<EventBatch> held(batch.release());
    // Every insert that gets rows of this batch holds a reference to each of its
    // acknowledgements: they are released when the last such insert is done.
    std::vector<AckRef> acks = held->take_acks();
    const std::size_t n = held->size();
    const std::uint64_t row_bytes = n > 0 && held->byte_size() > 0 ? std::max<std::uint64_t>(1, held->byte_size() / n) : 512;
    for (std::size_t at = 0; at < n;) {
      std::size_t take = std::min(n - at, max_events_ - filling_.rows);
      std::uint64_t room = max_bytes_ > filling_.input_bytes ? (max_bytes_ - filling_.input_bytes) / row_bytes : 0;
      take = std::max<std::size_t>(1, std::min<std::uint64_t>(take, std::max<std::uint64_t>(room, 1)));
      filling_.slices.push_back(Slice{held, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(at + take)});
      filling_.acks.insert(filling_.acks.end(), acks.begin(), acks.end());
      filling_.rows += take;
      filling_.input_bytes += take * row_bytes;
      held_rows_ += take;
      at += take;
      if (filling_.rows >= max_events_ || filling_.input_bytes >= max_bytes_) seal();
    }
    if (filling_.rows > 0 && !flush_timer_armed_) {
      flush_timer_armed_ = true;
      start_timer(flush_timer_, ctx_->loop(), this, [](uv_timer_t* t) {
        auto* self = static_cast<ClickHouseSink*>(t->data);
        self->flush_timer_armed_ = false;
        self->seal();
      }, batch_timeout_ms_);
    }
    pump();
  }

  bool ready() const override { return held_rows_ < max_held_rows_; }

  ~ClickHouseSink() override {
    if (encoding_ != nullptr) encoding_->self = nullptr;  // its result is dropped when it lands
  }

  void drain(std::function<void()> done) override {
    draining_ = true;
    drain_done_ = std::move(done);
    seal();  // and pump(), which checks whether everything is delivered
  }

 private:
  // The filling insert is complete: encode it (on the thread pool), then queue it.
  void seal() {
    if (flush_timer_armed_) {
      uv_timer_stop(flush_timer_.get());
      flush_timer_armed_ = false;
    }
    if (filling_.rows == 0) {
      pump();
      return;
    }
    Insert insert = std::move(filling_);
    filling_ = Insert{};
    insert.token = fmt::format("{}-{}", token_prefix_, next_sequence_++);
    insert.endpoint = next_endpoint_++ % endpoints_.size();
    to_encode_.push_back(std::move(insert));
    start_encoding();
  }

  struct EncodeJob {
    uv_work_t work{};
    ClickHouseSink* self = nullptr;  // nulled if the sink goes away first
    std::shared_ptr<Encoder> encoder;
    Insert insert;
  };

  void start_encoding() {
    if (encoding_ != nullptr || to_encode_.empty()) return;
    auto job = std::make_unique<EncodeJob>();
    job->work.data = job.get();
    job->self = this;
    job->encoder = encoder_;
    job->insert = std::move(to_encode_.front());
    to_encode_.pop_front();
    int rc = uv_queue_work(
        ctx_->loop(), &job->work, [](uv_work_t* w) {
          auto* j = static_cast<EncodeJob*>(w->data);
          j->encoder->encode(j->insert);
        },
        [](uv_work_t* w, int) {
          std::unique_ptr<EncodeJob> j(static_cast<EncodeJob*>(w->data));
          if (j->self != nullptr) j->self->encoded(std::move(j->insert));
        });
    if (rc == 0) {
      encoding_ = job.release();
      return;
    }
    // No thread pool: encode here.
    encoder_->encode(job->insert);
    encoding_ = job.get();
    encoded(std::move(job->insert));
  }

  void encoded(Insert insert) {
    encoding_ = nullptr;
    insert.slices.clear();  // the batches (and their input buffers) go, on the loop
    waiting_.push_back(std::move(insert));
    start_encoding();
    pump();
  }

  void pump() {
    auto now = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point earliest = std::chrono::steady_clock::time_point::max();
    for (auto it = waiting_.begin(); it != waiting_.end() && in_flight_ < concurrency_;) {
      if (it->not_before > now) {
        earliest = std::min(earliest, it->not_before);
        ++it;
        continue;
      }
      send(std::move(*it));
      it = waiting_.erase(it);
    }
    for (const Insert& insert : waiting_) {
      if (insert.not_before > now) earliest = std::min(earliest, insert.not_before);
    }
    if (earliest != std::chrono::steady_clock::time_point::max()) {
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(earliest - now).count() + 1;
      start_timer(retry_timer_, ctx_->loop(), this, [](uv_timer_t* t) { static_cast<ClickHouseSink*>(t->data)->pump(); },
                  static_cast<std::uint64_t>(std::max<std::int64_t>(1, wait)));
    }
    check_drained();
  }

  void send(Insert insert) {
    if (!insert.sent_body) insert.sent_body = encoder_->compress(insert.body.view());  // a split part
    http::ClientRequest request;
    request.method = "POST";
    request.url = endpoints_[insert.endpoint] + query_params_;
    if (use_token_) request.url += "&insert_deduplication_token=" + http::url_encode(insert.token);
    request.user = user_;
    request.password = password_;
    request.timeout = timeout_;
    request.shared_body = insert.sent_body;
    request.headers.push_back({"Content-Type", "application/x-ndjson"});
    if (compression_ != "none") request.headers.push_back({"Content-Encoding", compression_});
    ++in_flight_;
    auto shared = std::make_shared<Insert>(std::move(insert));
    client_->send(std::move(request), [this, shared](http::ClientResponse response) {
      --in_flight_;
      answered(std::move(*shared), response);
    });
  }

  void answered(Insert insert, const http::ClientResponse& response) {
    const bool was_ready = ready();
    ComponentMetrics& m = ctx_->metrics();
    m.requests.add();
    m.request_latency_nanos_sum.add(static_cast<std::uint64_t>(response.seconds * 1e9));
    Verdict verdict = clickhouse::classify(response.status, response.header("x-clickhouse-exception-code"),
                                           response.body, response.transport_error);
    switch (verdict.outcome) {
      case Outcome::Delivered: delivered(insert); break;
      case Outcome::Retry: retry(std::move(insert), verdict, response, false); break;
      case Outcome::Setup:
        if (verdict.code == 115 && verdict.message.find("insert_deduplication_token") != std::string::npos) {
          // Answered for every insert sent before the first such answer came back.
          if (use_token_) {
            log::warn(ctx_->name(), "the server does not know insert_deduplication_token ({}); sending inserts "
                                    "without it (retries still resend the same rows in the same order)", verdict.message);
            use_token_ = false;
          }
          insert.not_before = {};
          waiting_.push_front(std::move(insert));
          break;
        }
        retry(std::move(insert), verdict, response, true);
        break;
      case Outcome::BadRows: bad_rows(std::move(insert), verdict); break;
    }
    pump();
    if (!was_ready && ready()) ctx_->ready_again();
  }

  void delivered(Insert& insert) {
    ComponentMetrics& m = ctx_->metrics();
    m.events_sent.add(insert.row_ends.size());
    m.bytes_sent.add(insert.body.size());
    held_rows_ -= insert.row_ends.size();
    if (problem_reported_) {
      log::info(ctx_->name(), "inserts into {}.{} succeed again", database_, table_);
      problem_reported_ = false;
    }
    // Dropping the insert releases its acknowledgement references: delivered.
  }

  void retry(Insert insert, const Verdict& verdict, const http::ClientResponse& response, bool setup) {
    ComponentMetrics& m = ctx_->metrics();
    m.errors.add();
    m.request_retries.add();
    ++insert.failures;
    std::chrono::milliseconds backoff = setup ? max_backoff_ : initial_backoff_ * (std::int64_t{1} << std::min(insert.failures - 1, 20));
    if (backoff > max_backoff_) backoff = max_backoff_;
    // Full jitter over the upper half: retries of many agents spread out.
    std::uniform_real_distribution<double> jitter(0.5, 1.0);
    auto wait = std::chrono::milliseconds(static_cast<std::int64_t>(static_cast<double>(backoff.count()) * jitter(rng_)));
    if (const std::string* after = response.header("retry-after")) {
      char* end = nullptr;
      long seconds = std::strtol(after->c_str(), &end, 10);
      if (end != after->c_str() && seconds > 0) wait = std::max(wait, std::chrono::milliseconds(seconds * 1000));
    }
    std::string what = describe(verdict, response.status);
    if (setup) {
      log::error(ctx_->name(), "insert into {}.{} at {} refused ({}); {} rows kept, retrying in {} ms", database_, table_,
                 endpoints_[insert.endpoint], what, insert.row_ends.size(), wait.count());
      problem_reported_ = true;
    } else if (insert.failures == 1 || insert.failures % 10 == 0) {
      log::warn(ctx_->name(), "insert of {} rows to {} failed ({}), attempt {}; retrying in {} ms", insert.row_ends.size(),
                endpoints_[insert.endpoint], what, insert.failures, wait.count());
    }
    insert.not_before = std::chrono::steady_clock::now() + wait;
    waiting_.push_front(std::move(insert));
  }

  static std::string describe(const Verdict& verdict, int status) {
    if (status == 0) return verdict.message;  // the transport error
    if (verdict.message.empty()) return fmt::format("HTTP {}", status);
    return fmt::format("HTTP {}: {}", status, verdict.message);
  }

  // Parse or type errors: halve until each bad row is alone, dead-letter it, insert the rest.
  void bad_rows(Insert insert, const Verdict& verdict) {
    ctx_->metrics().errors.add();
    std::size_t rows = insert.row_ends.size();
    if (rows == 1) {
      dead_letter_row(insert.body.view(), verdict.message);
      held_rows_ -= 1;
      return;  // a dead letter counts as delivered for the acknowledgements
    }
    if (insert.failures == 0 && insert.token.find('/') == std::string::npos) {
      log::warn(ctx_->name(), "{} rejected an insert of {} rows ({}); splitting it to find the bad rows",
                endpoints_[insert.endpoint], rows, verdict.message.empty() ? "no reason given" : verdict.message);
    }
    std::size_t half = rows / 2;
    Insert first = part(insert, 0, half, "a");
    Insert second = part(insert, half, rows, "b");
    waiting_.push_front(std::move(second));
    waiting_.push_front(std::move(first));
  }

  static Insert part(const Insert& whole, std::size_t from, std::size_t to, const char* tag) {
    Insert p;
    p.token = whole.token + "/" + tag;  // a distinct, still stable token per part
    p.endpoint = whole.endpoint;
    p.acks = whole.acks;
    std::uint32_t start = from == 0 ? 0 : whole.row_ends[from - 1];
    p.body.append(whole.body.view().substr(start, whole.row_ends[to - 1] - start));
    for (std::size_t i = from; i < to; ++i) p.row_ends.push_back(whole.row_ends[i] - start);
    p.rows = p.row_ends.size();
    return p;
  }

  // The dead letter of a refused row: the row as sent (the columns the server saw).
  void dead_letter_row(std::string_view row, const std::string& reason) {
    while (!row.empty() && row.back() == '\n') row.remove_suffix(1);
    Arena arena;
    auto parsed = parser_.parse(row, arena);
    std::string why = fmt::format("clickhouse: {}", reason);
    if (parsed.ok()) ctx_->dead_letter(Event{parsed.value(), Value::null()}, why);
    else ctx_->dead_letter_raw(row, 0, why);
  }

  void check_drained() {
    if (!draining_ || !drain_done_) return;
    if (filling_.rows > 0) seal();
    if (!waiting_.empty() || in_flight_ > 0 || filling_.rows > 0 || !to_encode_.empty() || encoding_ != nullptr) return;
    auto done = std::move(drain_done_);
    drain_done_ = nullptr;
    done();
  }

  // ---- healthcheck ----------------------------------------------------------------------
  std::string table_exists_url(const std::string& endpoint) const {
    std::string query = fmt::format("SELECT count() FROM system.tables WHERE database = '{}' AND name = '{}'",
                                    escape_literal(database_), escape_literal(table_));
    return endpoint + "/?query=" + http::url_encode(query);
  }

  static std::string escape_literal(std::string_view text) {
    std::string out;
    for (char c : text) {
      if (c == '\'' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    return out;
  }

  http::ClientRequest check_request(std::string url) const {
    http::ClientRequest r;
    r.method = "GET";
    r.url = std::move(url);
    r.user = user_;
    r.password = password_;
    r.timeout = std::chrono::milliseconds(5000);
    return r;
  }

  // "": healthy; otherwise what is wrong.
  static std::string judge_ping(const http::ClientResponse& r) {
    if (r.status == 0) return r.transport_error;
    if (r.status != 200) return fmt::format("GET /ping answered HTTP {}", r.status);
    return {};
  }
  std::string judge_table(const http::ClientResponse& r) const {
    if (r.status == 0) return r.transport_error;
    if (r.status != 200) return fmt::format("checking the table failed: HTTP {}: {}", r.status, r.body.substr(0, r.body.find('\n')));
    if (r.body.rfind("0", 0) == 0) return fmt::format("table {}.{} does not exist", database_, table_);
    return {};
  }

  Status check_blocking() {
    for (const std::string& endpoint : endpoints_) {
      std::string problem = judge_ping(http::send_blocking(check_request(endpoint + "/ping")));
      if (problem.empty()) problem = judge_table(http::send_blocking(check_request(table_exists_url(endpoint))));
      if (!problem.empty()) {
        return Error(fmt::format("clickhouse healthcheck of {} failed: {} (healthcheck.required is set)", endpoint, problem));
      }
    }
    return {};
  }

  void check_async() {
    for (const std::string& endpoint : endpoints_) {
      client_->send(check_request(endpoint + "/ping"), [this, endpoint](http::ClientResponse r) {
        std::string problem = judge_ping(r);
        if (!problem.empty()) {
          log::warn(ctx_->name(), "healthcheck: {} is not answering ({}); rows are kept until it does", endpoint, problem);
          return;
        }
        client_->send(check_request(table_exists_url(endpoint)), [this, endpoint](http::ClientResponse t) {
          std::string issue = judge_table(t);
          if (!issue.empty()) log::warn(ctx_->name(), "healthcheck of {}: {}; rows are kept until it is fixed", endpoint, issue);
        });
      });
    }
  }

  SinkContext* ctx_ = nullptr;
  std::vector<std::string> endpoints_;
  std::string database_, table_, user_, password_, compression_, query_params_, token_prefix_;
  std::shared_ptr<Encoder> encoder_;
  std::size_t max_events_ = 10000, max_held_rows_ = 40000, concurrency_ = 2;
  std::uint64_t max_bytes_ = 10 << 20, batch_timeout_ms_ = 1000;
  std::chrono::milliseconds timeout_{30000}, initial_backoff_{500}, max_backoff_{30000};
  bool use_token_ = true, healthcheck_ = true, healthcheck_required_ = false;
  std::unique_ptr<http::Client> client_;
  JsonParser parser_;
  std::mt19937_64 rng_;
  Insert filling_;
  std::deque<Insert> to_encode_;  // sealed, waiting for the encoder
  EncodeJob* encoding_ = nullptr;  // the insert being encoded
  std::deque<Insert> waiting_;     // encoded, not yet sent (or waiting to be retried)
  std::size_t in_flight_ = 0;
  std::size_t held_rows_ = 0;
  std::uint64_t next_sequence_ = 0;
  std::size_t next_endpoint_ = 0;
  UvTimer flush_timer_, retry_timer_;
  bool flush_timer_armed_ = false;
  bool problem_reported_ = false;
  bool draining_ = false;
  std::function<void()> drain_done_;
};

}  // namespace

WEIR_REGISTER_SINK("clickhouse", "Inserts rows into ClickHouse over HTTP (JSONEachRow), with retries and dead letters",
                   kSchema, ClickHouseSink::create);

}  // namespace weir::plugins
