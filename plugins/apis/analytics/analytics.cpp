// `analytics` API: reads CVAT's events back out of ClickHouse. CVAT's events export in both
// of CVAT's API generations (a CSV streamed from ClickHouse to a file in data_dir, then to
// the client) and Dataloop's measures query. docs/analytics.md is its manual; the queries
// and the CSV are query.cpp's.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "query.hpp"
#include "weir/http.hpp"
#include "weir/http_client.hpp"
#include "weir/ids.hpp"
#include "weir/io.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"
#include "weir/uv.hpp"

namespace weir::plugins {
namespace analytics {
extern const std::pair<std::string_view, std::string_view> kPages[];  // pages/*, compiled in (cmake/embed.cmake)
extern const std::size_t kPages_count;
}  // namespace analytics
namespace {

using namespace analytics;

const OptionSchema kSchema = {
    {.name = "endpoint", .type = OptionType::String, .required = true,
     .doc = "ClickHouse's HTTP interface, http://host:8123 (the server the clickhouse sink writes)."},
    {.name = "database", .type = OptionType::String, .default_value = "cvat", .doc = "The events table's database."},
    {.name = "table", .type = OptionType::String, .default_value = "events", .doc = "CVAT's events table."},
    {.name = "auth.user", .type = OptionType::String, .doc = "ClickHouse user (basic auth)."},
    {.name = "auth.password", .type = OptionType::String, .doc = "Its password."},
    {.name = "access.tokens", .type = OptionType::StringList,
     .doc = "Bearer tokens that may use the API (Authorization: Bearer <token>). Empty ones are refused."},
    {.name = "access.users", .type = OptionType::Map,
     .doc = "Basic-auth users that may use the API, `name: password`."},
    {.name = "export_ttl", .type = OptionType::Duration, .default_value = "1h",
     .doc = "How long a finished export's CSV is kept for download (CVAT keeps its cache an hour)."},
    {.name = "max_concurrent_exports", .type = OptionType::Integer, .default_value = "2",
     .doc = "Exports running at once; one more is answered 429 with Retry-After."},
    {.name = "query_timeout", .type = OptionType::Duration, .default_value = "5m",
     .doc = "The most a ClickHouse query (an export's included) may take."},
    {.name = "chart_js", .type = OptionType::String, .default_value = "/usr/share/javascript/chart.js/chart.min.js",
     .doc = "Chart.js for the dashboards' charts (Debian's libjs-chart.js), served as /dashboards/assets/chart.js; "
            "missing, the pages show their tables and say the charts are off."},
    {.name = "max_buckets", .type = OptionType::Integer, .default_value = "100000",
     .doc = "Rows (time buckets, pairs) one measure may have; more is a 400 asking for a narrower range."},
};

// An export's CSV being written, or written: ClickHouse's answer is converted as it comes and
// written by an FdWriter (on the thread pool); ClickHouse is paused while more than
// kWriteBehind bytes wait for the disk.
struct Export {
  enum class State { Started, Finished, Failed };
  std::string id;
  std::string filters;  // ExportFilters::canonical(), for the older flow's URL
  State state = State::Started;
  std::string message;   // why it failed
  std::string path;      // the finished file
  std::string partial;   // while written
  EpochNanos ended = 0;  // finished or failed at (the pipeline's clock)
  std::uint64_t transfer = 0;
  std::unique_ptr<FdWriter> writer;
  TsvToCsv csv{kExportColumns};
  bool paused = false;
  bool write_failed = false;
  std::uint64_t bytes = 0;
};
constexpr std::size_t kWriteBehind = 4 << 20;

std::string_view state_name(Export::State s) {
  switch (s) {
    case Export::State::Started: return "started";
    case Export::State::Finished: return "finished";
    case Export::State::Failed: return "failed";
  }
  return "failed";
}

bool valid_uuid(std::string_view id) {
  if (id.size() != 36) return false;
  for (std::size_t i = 0; i < id.size(); ++i) {
    char c = id[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string first_line(std::string_view text) {
  std::string_view line = text.substr(0, text.find('\n'));
  return std::string(line.substr(0, 500));
}

class AnalyticsApi final : public Api {
 public:
  static Result<std::unique_ptr<AnalyticsApi>> create(const Options& options) {
    auto self = std::make_unique<AnalyticsApi>();
    self->endpoint_ = std::string(options.string("endpoint"));
    while (!self->endpoint_.empty() && self->endpoint_.back() == '/') self->endpoint_.pop_back();
    if (!self->endpoint_.starts_with("http://") && !self->endpoint_.starts_with("https://")) {
      return options.error_at("endpoint", "endpoint must be an http:// or https:// URL");
    }
    auto identifier = [&](std::string_view key) -> Result<std::string> {
      std::string text(options.string(key));
      bool ok = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
      });
      if (!ok) return options.error_at(key, fmt::format("{} must be a name of letters, digits and '_'", key));
      return text;
    };
    auto database = identifier("database");
    if (!database.ok()) return database.error();
    auto table = identifier("table");
    if (!table.ok()) return table.error();
    self->database_ = database.value();
    self->table_ = fmt::format("`{}`.`{}`", database.value(), table.value());
    if (options.has("auth.user")) self->user_ = std::string(options.string("auth.user"));
    if (options.has("auth.password")) self->password_ = std::string(options.string("auth.password"));
    if (options.has("access.tokens")) self->tokens_ = options.strings("access.tokens");
    for (const std::string& token : self->tokens_) {
      if (token.empty()) {
        return options.error_at("access.tokens", "an access token is empty (an unset variable?): it would let anyone in");
      }
    }
    if (const Value* users = options.find("access.users"); users != nullptr && !users->is_null()) {
      if (!users->is_object()) return options.error_at("access.users", "access.users must be a mapping of name: password");
      for (const Member& m : users->members()) {
        if (!m.value.is_string() || m.value.as_string().empty() || m.key.empty()) {
          return options.error_at("access.users", fmt::format("access.users: '{}' needs a password (a non-empty string)", m.key));
        }
        self->basic_.push_back(http::basic_credentials(m.key, m.value.as_string()));
      }
    }
    if (self->tokens_.empty() && self->basic_.empty()) {
      return options.error_at("access.tokens", "the analytics API needs access.tokens or access.users: it would be open to anyone");
    }
    self->ttl_ns_ = options.duration("export_ttl").count();
    if (self->ttl_ns_ <= 0) return options.error_at("export_ttl", "export_ttl must be above 0");
    std::int64_t concurrent = options.integer("max_concurrent_exports");
    if (concurrent < 1) return options.error_at("max_concurrent_exports", "max_concurrent_exports must be at least 1");
    self->max_exports_ = static_cast<std::size_t>(concurrent);
    self->timeout_ = std::chrono::duration_cast<std::chrono::milliseconds>(options.duration("query_timeout"));
    std::int64_t buckets = options.integer("max_buckets");
    if (buckets < 1) return options.error_at("max_buckets", "max_buckets must be at least 1");
    self->max_rows_ = static_cast<std::uint64_t>(buckets);
    self->chart_js_ = std::string(options.string("chart_js"));
    return self;
  }

  ~AnalyticsApi() override { abandon_exports(); }  // (stop() ran first when it started)

  std::vector<std::string> paths() const override {
    return {"/api/events", "/api/requests", "/api/v1/analytics", "/dashboards"};
  }

  Status start(ApiContext& ctx) override {
    ctx_ = &ctx;
    client_ = std::make_unique<http::Client>(ctx.loop());
    uuids_.reseed(ctx.random().next());
    dir_ = fmt::format("{}/apis/{}/exports", ctx.data_dir(), ctx.name());
    std::error_code error;
    // What a run before left is not served: its ids are unknown to this one.
    std::filesystem::remove_all(dir_, error);
    std::filesystem::create_directories(dir_, error);
    if (error) return Error(fmt::format("cannot make {}: {}", dir_, error.message()));
    int rc = start_timer(expiry_timer_, ctx.loop(), this,
                         [](uv_timer_t* t) { static_cast<AnalyticsApi*>(t->data)->expire(); }, 1000, 1000);
    if (rc != 0) return Error("cannot start the expiry timer: " + uv_error_text(rc));
    learn_dialect([](const std::string&) {});
    return {};
  }

  // Transfers are abandoned, unanswered queries answered 503 (their callbacks see alive_
  // false), and `done` waits for the export files' writes in flight on the thread pool.
  void stop(std::function<void()> done) override {
    stopping_ = true;
    std::vector<std::unique_ptr<FdWriter>> writers = abandon_exports();
    expiry_timer_.close();
    auto left = std::make_shared<std::size_t>(writers.size() + 1);
    auto one_done = [left, done = std::move(done)] {
      if (--*left == 0) done();
    };
    for (auto& w : writers) {
      FdWriter* writer = w.release();
      writer->when_idle([writer, one_done] {
        one_done();
        delete writer;  // (safe in its own callback: the write's state outlives it)
      });
    }
    one_done();
    // Queries in flight are answered now rather than when ClickHouse answers (the client's
    // callbacks go with it).
    for (auto& waiting : waiting_) {
      if (auto responder = waiting.lock()) responder->send(http::Response::error(503, "weir is stopping"));
    }
    waiting_.clear();
    client_.reset();
  }

  void handle(http::Request& request, http::Responder responder) override {
    ctx_->metrics().requests.add();
    // A browser's first page load may carry the token in the URL: it goes into a cookie and
    // out of the URL, so it stays in no history, bookmark or Referer. The answer is a page
    // that reloads itself without the token (not a redirect: a link from another site
    // would not carry the SameSite=Strict cookie through one).
    if (request.path.starts_with("/dashboards") && request.method == "GET") {
      if (auto token = request.query_param("token")) {
        auto page = kPageTitles.find(std::string_view(request.path).substr(std::strlen("/dashboards")));
        if (page == kPageTitles.end()) return responder.send(http::Response::error(404, "no such dashboard"));
        if (!valid_token(*token)) return responder.send(unauthorized());
        bool cookie_safe = std::all_of(token->begin(), token->end(), [](char c) {
          return c > 0x20 && c < 0x7f && c != ';' && c != ',' && c != '"' && c != '\\';
        });
        if (!cookie_safe) return responder.send(http::Response::error(400, "this token cannot be kept in a cookie: use the Authorization header"));
        std::string target = "/dashboards" + page->first;  // one of a fixed set: nothing of the request's
        http::Response landing = http::Response::text(
            200, fmt::format(R"(<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={0}"><a href="{0}">{0}</a>)",
                             target));
        landing.content_type = "text/html; charset=utf-8";
        landing.headers.push_back({"cache-control", "no-store"});
        landing.headers.push_back({"referrer-policy", "no-referrer"});
        landing.headers.push_back({"set-cookie", fmt::format("{}={}; Path=/dashboards; HttpOnly; SameSite=Strict", cookie_name(), *token)});
        return responder.send(std::move(landing));
      }
    }
    if (!authorized(request)) {
      return responder.send(unauthorized());
    }
    if (stopping_) return responder.send(http::Response::error(503, "weir is stopping"));
    const std::string& path = request.path;
    if (path == "/api/events") return old_flow(request, std::move(responder));
    if (path == "/api/events/export") {
      if (request.method != "POST") return responder.send(http::Response::error(405, "use POST /api/events/export"));
      return new_flow_start(request, std::move(responder));
    }
    if (path.starts_with("/api/requests/")) {
      if (request.method != "GET") return responder.send(http::Response::error(405, "use GET"));
      return request_status(request, path.substr(std::strlen("/api/requests/")), std::move(responder));
    }
    if (path == "/api/events/download") {
      if (request.method != "GET") return responder.send(http::Response::error(405, "use GET"));
      auto id = request.query_param("rq_id").value_or("");
      auto found = exports_.find(id);
      if (found == exports_.end()) return responder.send(http::Response::error(404, "no such export (or it expired)"));
      if (found->second->state != Export::State::Finished) {
        return responder.send(http::Response::error(409, fmt::format("the export is {}", state_name(found->second->state))));
      }
      return responder.send(download(*found->second, request));
    }
    if (path == "/api/v1/analytics/table" || path == "/dashboards/table") {
      if (request.method != "GET") return responder.send(http::Response::error(405, "use GET"));
      return panel_table(request, std::move(responder));
    }
    if (path.starts_with("/dashboards")) return dashboards(request, std::move(responder));
    if (path == "/api/v1/analytics/query") {
      if (request.method != "POST") return responder.send(http::Response::error(405, "use POST /api/v1/analytics/query"));
      return measures(request, std::move(responder));
    }
    responder.send(http::Response::error(
        404, "the analytics API serves /api/events, /api/events/export, /api/requests/<id>, /api/events/download, "
             "/api/v1/analytics/query, /api/v1/analytics/table and /dashboards"));
  }

 private:
  // The pages under /dashboards (what follows it) and their titles.
  static inline const std::map<std::string, std::string, std::less<>> kPageTitles = {
      {"", "Dashboards"}, {"/", "Dashboards"}, {"/events", "All events"}, {"/management", "Management"},
      {"/monitoring", "Monitoring"}, {"/pipeline", "Pipeline"}};

  // Cookies do not tell ports apart: the port in the name keeps two weirs on one host apart.
  std::string cookie_name() const {
    const std::string& address = ctx_->served_address();
    return "weir_analytics_" + address.substr(address.rfind(':') + 1);
  }

  static http::Response unauthorized() {
    http::Response denied = http::Response::error(401, "a valid bearer token or user is needed");
    denied.headers.push_back({"www-authenticate", "Bearer realm=\"weir\", Basic realm=\"weir\""});
    return denied;
  }

  // Every secret is compared, so the time taken does not tell which one matched.
  static bool any_secret(std::string_view given, const std::vector<std::string>& secrets) {
    bool ok = false;
    for (const std::string& secret : secrets) ok = http::same_secret(given, secret) || ok;
    return ok;
  }
  bool valid_token(std::string_view credential) const { return any_secret(credential, tokens_); }

  bool authorized(const http::Request& request) const {
    const std::string* header = request.header("authorization");
    if (header == nullptr) {
      // A page and its own requests carry the cookie its first load set; it opens reads
      // under /dashboards only (nothing that starts work, such as an export).
      const std::string* cookies = request.header("cookie");
      if (cookies == nullptr || !request.path.starts_with("/dashboards") || request.method != "GET") return false;
      std::string_view all = *cookies;
      std::string needle = cookie_name() + "=";
      for (std::size_t at = all.find(needle); at != std::string_view::npos; at = all.find(needle, at + 1)) {
        if (at != 0 && all[at - 1] != ' ' && all[at - 1] != ';') continue;
        std::string_view value = all.substr(at + needle.size());
        value = value.substr(0, value.find(';'));
        if (valid_token(value)) return true;  // (a stale one may come first)
      }
      return false;
    }
    std::string_view value = *header;
    auto scheme = value.substr(0, value.find(' '));
    std::string_view credential = value.substr(std::min(value.size(), scheme.size() + 1));
    while (!credential.empty() && credential.front() == ' ') credential.remove_prefix(1);
    std::string lower = http::lower_case(scheme);
    if (lower == "bearer") return valid_token(credential);
    if (lower == "basic") return any_secret(credential, basic_);
    return false;
  }

  // ---- ClickHouse -------------------------------------------------------------------

  http::ClientRequest clickhouse_request(std::string sql) const {
    http::ClientRequest r;
    r.method = "POST";
    r.url = fmt::format("{}/?database={}", endpoint_, database_);
    r.body = std::move(sql);
    r.user = user_;
    r.password = password_;
    r.timeout = timeout_;
    return r;
  }

  static std::string clickhouse_error(const http::ClientResponse& response) {
    if (response.status == 0) return "ClickHouse did not answer: " + response.transport_error;
    return fmt::format("ClickHouse answered {}: {}", response.status, first_line(response.body));
  }

  // The server's dialect, asked once (again after a failure); `then` gets "" or the error.
  void learn_dialect(std::function<void(const std::string&)> then) {
    if (dialect_) return then("");
    dialect_waiters_.push_back(std::move(then));
    if (dialect_waiters_.size() > 1) return;
    client_->send(clickhouse_request("SELECT version() FORMAT TabSeparated"), [this, alive = alive_](http::ClientResponse response) {
      if (!*alive) return;
      std::string error;
      if (response.status == 200) {
        std::string version = first_line(response.body);
        dialect_ = Dialect::of_version(version);
        log::info(ctx_->name(), "ClickHouse {}: timestamp as {}, JSON read with {}", version,
                  dialect_->datetime64 ? "DateTime64(3)" : "DateTime (whole seconds)",
                  dialect_->json_extract ? "JSONExtract*" : "visitParam*");
      } else {
        error = clickhouse_error(response);
        ctx_->metrics().errors.add();
      }
      auto waiters = std::move(dialect_waiters_);
      dialect_waiters_.clear();
      for (auto& w : waiters) w(error);
    });
  }

  // A query answered later: its responder waits in waiting_ (answered 503 if the API stops
  // first), and `ask` runs once the server's dialect is known (502 when it cannot be).
  void when_ready(http::Responder responder, std::function<void(std::shared_ptr<http::Responder>)> ask) {
    auto shared = std::make_shared<http::Responder>(std::move(responder));
    std::erase_if(waiting_, [](const auto& w) { return w.expired(); });
    waiting_.push_back(shared);
    learn_dialect([alive = alive_, shared, ask = std::move(ask)](const std::string& error) {
      if (!*alive) return shared->send(http::Response::error(503, "weir is stopping"));
      if (!error.empty()) return shared->send(http::Response::error(502, error));
      ask(shared);
    });
  }

  // ---- the export -------------------------------------------------------------------

  std::size_t running_exports() const {
    std::size_t n = 0;
    for (const auto& [id, e] : exports_) n += e->state == Export::State::Started;
    return n;
  }

  // Starts an export under `id`: the answer is 202 with `body_key`, or the 400 or 429 that
  // refuses it (a failure after the 202 is the export's status).
  void start_export(std::string id, const http::Request& request, std::string body_key, http::Responder responder) {
    auto filters = parse_export_filters(request, ctx_->clock().now());
    if (!filters.ok()) return responder.send(http::Response::error(400, filters.error().message()));
    if (running_exports() >= max_exports_) {
      http::Response busy = http::Response::error(
          429, fmt::format("{} exports are running (max_concurrent_exports): try again shortly", running_exports()));
      busy.headers.push_back({"retry-after", "5"});
      return responder.send(std::move(busy));
    }
    auto job = std::make_unique<Export>();
    job->id = id;
    job->filters = filters.value().canonical();
    job->partial = fmt::format("{}/{}.csv.part", dir_, id);
    job->path = fmt::format("{}/{}.csv", dir_, id);
    exports_[id] = std::move(job);
    std::string answer = fmt::format(R"({{"{}":"{}"}})", body_key, id);
    responder.send(http::Response::json(202, answer));
    learn_dialect([this, alive = alive_, id, f = filters.value()](const std::string& error) {
      if (!*alive) return;
      auto found = exports_.find(id);
      if (found == exports_.end()) return;
      if (!error.empty()) return fail(*found->second, error);
      run_export(*found->second, f);
    });
  }

  void run_export(Export& e, const ExportFilters& filters) {
    int fd = ::open(e.partial.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return fail(e, fmt::format("cannot write {}: {}", e.partial, std::strerror(errno)));
    e.writer = std::make_unique<FdWriter>(ctx_->loop(), fd, true);
    ByteBuffer header;
    header.append(export_csv_header());
    write(e, std::move(header));
    http::ClientRequest r = clickhouse_request(export_sql(filters, table_, *dialect_));
    std::string id = e.id;
    r.on_body = [this, id](std::string_view piece) {
      auto found = exports_.find(id);
      if (found == exports_.end()) return true;  // (cancelled at once after)
      Export& job = *found->second;
      if (job.writer->pending_bytes() > kWriteBehind) {
        if (!job.paused) {
          job.paused = true;
          job.writer->when_idle([this, id] {
            auto again = exports_.find(id);
            if (again == exports_.end() || !again->second->paused) return;
            again->second->paused = false;
            client_->resume(again->second->transfer);
          });
        }
        return false;
      }
      ByteBuffer csv;
      csv.reserve(piece.size() + piece.size() / 4);  // (CSV runs a little longer than TabSeparated)
      job.csv.feed(piece, csv);
      job.bytes += piece.size();
      write(job, std::move(csv));
      return true;
    };
    log::info(ctx_->name(), "export {} started ({})", e.id, e.filters);
    e.transfer = client_->send(std::move(r), [this, id](http::ClientResponse response) {
      auto found = exports_.find(id);
      if (found == exports_.end()) return;
      Export& job = *found->second;
      job.transfer = 0;
      if (response.status != 200) return fail(job, clickhouse_error(response));
      if (const std::string* code = response.header("x-clickhouse-exception-code")) {
        return fail(job, "ClickHouse failed the query: exception code " + *code);
      }
      ByteBuffer rest;
      if (!job.csv.finish(rest)) return fail(job, "ClickHouse's answer ended in the middle of a row");
      if (!job.csv.error().empty()) return fail(job, "ClickHouse's answer broke off: " + job.csv.error());
      write(job, std::move(rest));
      job.writer->when_idle([this, id] {
        auto done = exports_.find(id);
        if (done == exports_.end()) return;
        Export& j = *done->second;
        j.writer.reset();  // closes the file
        if (j.write_failed) return;  // (failed already)
        if (::rename(j.partial.c_str(), j.path.c_str()) != 0) {
          return fail(j, fmt::format("cannot rename {}: {}", j.partial, std::strerror(errno)));
        }
        j.state = Export::State::Finished;
        j.ended = ctx_->clock().now();
        log::info(ctx_->name(), "export {} finished: {} rows, {} bytes from ClickHouse", j.id, j.csv.rows(), j.bytes);
      });
    });
  }

  void write(Export& e, ByteBuffer bytes) {
    if (bytes.size() == 0 || !e.writer) return;
    std::string id = e.id;
    e.writer->write(std::move(bytes), [this, id](int status) {
      if (status == 0) return;
      auto found = exports_.find(id);
      if (found == exports_.end() || found->second->write_failed) return;
      found->second->write_failed = true;
      fail(*found->second, "cannot write the export's file: " + uv_error_text(status));
    });
  }

  void fail(Export& e, std::string why) {
    ctx_->metrics().errors.add();
    log::warn(ctx_->name(), "export {} failed: {}", e.id, why);
    if (e.transfer != 0) client_->cancel(e.transfer);
    e.transfer = 0;
    e.state = Export::State::Failed;
    e.message = std::move(why);
    e.ended = ctx_->clock().now();
    e.writer.reset();  // (a write in flight ends, and closes the file, without it)
    ::unlink(e.partial.c_str());
  }

  http::Response download(const Export& e, const http::Request& request) {
    http::Response file;
    file.status = 200;
    file.content_type = "text/csv; charset=utf-8";
    file.file = e.path;
    std::string name = request.query_param("filename").value_or("");
    bool safe = !name.empty() && name.size() < 200 && std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    });
    if (!safe) {
      // CVAT's name: logs_<when>.csv, from the pipeline's clock.
      std::string when = format_iso8601_ms(ctx_->clock().now());  // 2024-01-01T12:00:00.000Z
      name = fmt::format("logs_{}_{}_{}_{}_{}_{}.csv", when.substr(0, 4), when.substr(5, 2), when.substr(8, 2),
                         when.substr(11, 2), when.substr(14, 2), when.substr(17, 2));
    }
    file.headers.push_back({"content-disposition", fmt::format("attachment; filename=\"{}\"", name)});
    return file;
  }

  // GET /api/events?filters[&query_id=][&action=download]
  void old_flow(const http::Request& request, http::Responder responder) {
    if (request.method != "GET") return responder.send(http::Response::error(405, "use GET /api/events"));
    auto action = request.query_param("action");
    if (action && *action != "download") return responder.send(http::Response::error(400, "Unexpected action specified for the request"));
    auto query_id = request.query_param("query_id");
    if (!query_id || query_id->empty()) return start_export(uuids_.next(), request, "query_id", std::move(responder));
    if (!valid_uuid(*query_id)) return responder.send(http::Response::error(400, "query_id must be a UUID"));
    auto found = exports_.find(*query_id);
    if (found == exports_.end()) return start_export(*query_id, request, "query_id", std::move(responder));
    Export& e = *found->second;
    switch (e.state) {
      case Export::State::Started:
        return responder.send(http::Response::json(202, fmt::format(R"({{"query_id":"{}"}})", e.id)));
      case Export::State::Failed: {
        std::string message = e.message;
        exports_.erase(found);  // as CVAT: asked again, it starts anew
        return responder.send(http::Response::error(500, message));
      }
      case Export::State::Finished:
        if (action) return responder.send(download(e, request));
        return responder.send(http::Response::json(201, fmt::format(R"({{"query_id":"{}"}})", e.id)));
    }
  }

  void new_flow_start(const http::Request& request, http::Responder responder) {
    start_export(uuids_.next(), request, "rq_id", std::move(responder));
  }

  void request_status(const http::Request& request, std::string id, http::Responder responder) {
    auto found = exports_.find(id);
    if (found == exports_.end()) return responder.send(http::Response::error(404, "no such request (or it expired)"));
    const Export& e = *found->second;
    ByteBuffer out;
    out.append(R"({"id":)");
    write_json_string(e.id, out);
    out.append(fmt::format(R"(,"status":"{}","message":)", state_name(e.state)));
    write_json_string(e.message, out);
    out.append(R"(,"result_url":)");
    if (e.state == Export::State::Finished) {
      // The address the client used (a proxy's, say), else the one weir serves on.
      const std::string* host = request.header("host");
      std::string base = fmt::format("http://{}", host != nullptr ? *host : ctx_->served_address());
      write_json_string(fmt::format("{}/api/events/download?rq_id={}", base, e.id), out);
    } else {
      out.append("null");
    }
    out.push_back('}');
    responder.send(http::Response::json(200, std::string(out.view())));
  }

  // Finished or failed exports older than export_ttl go, with their files.
  void expire() {
    EpochNanos now = ctx_->clock().now();
    for (auto it = exports_.begin(); it != exports_.end();) {
      Export& e = *it->second;
      if (e.state != Export::State::Started && now - e.ended >= ttl_ns_) {
        ::unlink(e.path.c_str());
        it = exports_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // Cancels the exports running; returns their writers, for the caller to see idle.
  std::vector<std::unique_ptr<FdWriter>> abandon_exports() {
    *alive_ = false;
    std::vector<std::unique_ptr<FdWriter>> writers;
    for (auto& [id, e] : exports_) {
      if (e->state != Export::State::Started) continue;
      if (e->transfer != 0 && client_) client_->cancel(e->transfer);
      ::unlink(e->partial.c_str());
      if (e->writer) writers.push_back(std::move(e->writer));
    }
    exports_.clear();
    return writers;
  }

  // ---- the dashboards ---------------------------------------------------------------

  void dashboards(const http::Request& request, http::Responder responder) {
    if (request.method != "GET" && request.method != "HEAD") return responder.send(http::Response::error(405, "use GET"));
    std::string_view path = request.path;
    // The pipeline page's data: weir's /graph and /metrics, here too, so the page works on
    // an API's own address and under its access rule.
    if (path == "/dashboards/graph" || path == "/dashboards/metrics") {
      bool graph = path == "/dashboards/graph";
      http::Response answer = graph ? http::Response::json(200, ctx_->pipeline_graph())
                                    : http::Response::text(200, ctx_->pipeline_metrics());
      if (!graph) answer.content_type = "text/plain; version=0.0.4; charset=utf-8";
      answer.headers.push_back({"cache-control", "no-store"});
      return responder.send(std::move(answer));
    }
    if (path == "/dashboards/assets/chart.js") {
      struct stat st {};
      if (::stat(chart_js_.c_str(), &st) != 0) {
        return responder.send(http::Response::error(404, fmt::format("{} is not there (apt-get install libjs-chart.js)", chart_js_)));
      }
      http::Response file;
      file.content_type = "text/javascript; charset=utf-8";
      file.file = chart_js_;
      file.headers.push_back({"cache-control", "max-age=3600"});
      return responder.send(std::move(file));
    }
    // /dashboards/NAME is pages/page.html for that page (dashboards.js draws it);
    // /dashboards/assets/FILE is pages/FILE.
    constexpr std::string_view kAssets = "/dashboards/assets/";
    bool asset = path.starts_with(kAssets);
    auto title = kPageTitles.find(path.substr(std::strlen("/dashboards")));
    if (!asset && title == kPageTitles.end()) {
      return responder.send(http::Response::error(404, "no such dashboard: /dashboards/events, management, monitoring, pipeline"));
    }
    std::string wanted = asset ? std::string(path.substr(kAssets.size())) : "page.html";
    for (std::size_t i = 0; i < kPages_count; ++i) {
      if (kPages[i].first != wanted) continue;
      std::string body(kPages[i].second);
      if (!asset) {
        std::string page = title->first.size() > 1 ? title->first.substr(1) : "index";
        for (auto [from, to] : {std::pair<std::string_view, std::string_view>{"{{TITLE}}", title->second},
                                std::pair<std::string_view, std::string_view>{"{{PAGE}}", page}}) {
          if (auto at = body.find(from); at != std::string::npos) body.replace(at, from.size(), to);
        }
      }
      std::string_view type = wanted.ends_with(".html") ? "text/html; charset=utf-8"
                              : wanted.ends_with(".js") ? "text/javascript; charset=utf-8"
                                                        : "text/css; charset=utf-8";
      http::Response page = http::Response::text(200, std::move(body));
      page.content_type = std::string(type);
      page.headers.push_back({"cache-control", "no-cache"});
      page.headers.push_back({"x-content-type-options", "nosniff"});
      return responder.send(std::move(page));
    }
    responder.send(http::Response::error(404, "no such dashboard: /dashboards/events, management, monitoring, pipeline"));
  }

  // GET /api/v1/analytics/table?name=...&filters: a dashboard panel's rows, ClickHouse's JSONCompact.
  void panel_table(const http::Request& request, http::Responder responder) {
    auto filters = parse_panel_filters(request);
    if (!filters.ok()) return responder.send(http::Response::error(400, filters.error().message()));
    std::string name = request.query_param("name").value_or("");
    when_ready(std::move(responder), [this, name, f = filters.value()](std::shared_ptr<http::Responder> shared) {
      auto sql = panel_sql(name, f, table_, *dialect_, ctx_->clock().now());
      if (!sql.ok()) return shared->send(http::Response::error(400, sql.error().message()));
      http::ClientRequest r = clickhouse_request(sql.value());
      r.max_response_bytes = 32 << 20;
      client_->send(std::move(r), [this, alive = alive_, shared](http::ClientResponse response) {
        if (!*alive) return shared->send(http::Response::error(503, "weir is stopping"));
        if (response.status != 200) {
          ctx_->metrics().errors.add();
          return shared->send(http::Response::error(502, clickhouse_error(response)));
        }
        shared->send(http::Response::json(200, std::move(response.body)));
      });
    });
  }

  // ---- the measures query ----------------------------------------------------------

  void measures(const http::Request& request, http::Responder responder) {
    auto parsed = parse_query(request.body, ctx_->clock().now());
    if (!parsed.ok()) return responder.send(http::Response::error(400, parsed.error().message()));
    auto query = std::make_shared<QueryRequest>(std::move(parsed.value()));
    // Filled measures answer every bucket: refused before asking when there would be too many.
    for (const MeasureRequest& m : query->measures) {
      if (m.type != "activeUsers" && m.type != "annotationTimeline" && m.type != "issueCounters") continue;
      for (Granularity g : m.granularities) {
        if (bucket_count(query->start, query->end, g) > max_rows_) {
          return responder.send(http::Response::error(
              400, fmt::format("{} at {} granularity spans more than {} buckets: narrow the range or coarsen the "
                               "granularity",
                               m.type, granularity_name(g), max_rows_)));
        }
      }
    }
    when_ready(std::move(responder), [this, query](std::shared_ptr<http::Responder> shared) { run_measures(query, shared); });
  }

  // One query per (measure, granularity), all at once; answered when the last is in.
  void run_measures(std::shared_ptr<QueryRequest> query, std::shared_ptr<http::Responder> responder) {
    struct Pending {
      std::vector<std::pair<std::size_t, Granularity>> parts;
      std::vector<std::optional<ByteBuffer>> elements;
      std::size_t left = 0;
      std::string error;
      int error_status = 0;
    };
    auto pending = std::make_shared<Pending>();
    for (std::size_t m = 0; m < query->measures.size(); ++m) {
      for (Granularity g : query->measures[m].granularities) pending->parts.emplace_back(m, g);
    }
    pending->elements.resize(pending->parts.size());
    pending->left = pending->parts.size();
    for (std::size_t i = 0; i < pending->parts.size(); ++i) {
      auto [m, g] = pending->parts[i];
      http::ClientRequest r = clickhouse_request(measure_sql(*query, query->measures[m], g, table_, *dialect_, max_rows_));
      r.max_response_bytes = 64 << 20;
      client_->send(std::move(r), [this, alive = alive_, query, responder, pending, i](http::ClientResponse response) {
        if (!*alive) return responder->send(http::Response::error(503, "weir is stopping"));
        auto [m, g] = pending->parts[i];
        if (response.status != 200) {
          ctx_->metrics().errors.add();
          if (pending->error.empty()) {
            pending->error = clickhouse_error(response);
            pending->error_status = 502;
          }
        } else {
          ByteBuffer element;
          bool too_many = false;
          Status made = measure_element(*query, query->measures[m], g, response.body, max_rows_, element, &too_many);
          if (made.ok()) {
            pending->elements[i] = std::move(element);
          } else if (pending->error.empty()) {
            pending->error = made.error().message();
            pending->error_status = too_many ? 400 : 502;
          }
        }
        if (--pending->left != 0) return;
        if (!pending->error.empty()) return responder->send(http::Response::error(pending->error_status, pending->error));
        ByteBuffer out;
        out.push_back('[');
        for (std::size_t k = 0; k < pending->elements.size(); ++k) {
          if (k != 0) out.push_back(',');
          out.append(pending->elements[k]->view());
        }
        out.push_back(']');
        responder->send(http::Response::json(200, std::string(out.view())));
      });
    }
  }

  std::string endpoint_, database_, table_, user_, password_;
  std::vector<std::string> tokens_;
  std::vector<std::string> basic_;  // access.users, as Basic credentials carry them (base64 of user:password)
  std::int64_t ttl_ns_ = 0;
  std::size_t max_exports_ = 2;
  std::chrono::milliseconds timeout_{300'000};
  std::uint64_t max_rows_ = 100000;
  std::string chart_js_;

  ApiContext* ctx_ = nullptr;
  std::unique_ptr<http::Client> client_;
  std::optional<Dialect> dialect_;
  std::vector<std::function<void(const std::string&)>> dialect_waiters_;
  UuidGenerator uuids_;
  std::string dir_;
  std::map<std::string, std::unique_ptr<Export>, std::less<>> exports_;
  UvTimer expiry_timer_;
  std::vector<std::weak_ptr<http::Responder>> waiting_;  // measures queries not answered yet
  bool stopping_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace

WEIR_REGISTER_API("analytics", "Serves CVAT's events export and Dataloop-style measures from ClickHouse", kSchema,
                  AnalyticsApi::create);

}  // namespace weir::plugins
