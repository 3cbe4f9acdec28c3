// `http_server` source: events POSTed over HTTP/1.1. A drop-in for the Vector source in
// CVAT's analytics stack (same address, JSON bodies, 200 on success), plus NDJSON, text and
// CVAT client batches, gzip/zstd bodies, auth, request ids, and acknowledgement mode.

#include <fmt/format.h>

#include <array>

#include "body_decoder.hpp"
#include "request_records.hpp"
#include "weir/http.hpp"
#include "weir/ids.hpp"
#include "weir/json.hpp"
#include "weir/log.hpp"
#include "weir/registry.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "address", .type = OptionType::String, .default_value = "0.0.0.0:8282",
     .doc = "host:port to listen on ([v6]:port for IPv6); port 0 picks a free one."},
    {.name = "path", .type = OptionType::String, .default_value = "/", .doc = "URL path events are posted to."},
    {.name = "strict_path", .type = OptionType::Bool, .default_value = "true",
     .doc = "Only `path` itself; false accepts any path below it too."},
    {.name = "decoding.codec", .type = OptionType::Enum, .default_value = "json",
     .choices = {"json", "ndjson", "text", "cvat_client"},
     .doc = "`json`: an object, an array of objects or NDJSON; `ndjson`; `text`: lines into `message`; "
            "`cvat_client`: CVAT's client event batches (clock-corrected)."},
    {.name = "max_body_bytes", .type = OptionType::Bytes, .default_value = "10MiB",
     .doc = "Larger bodies (after decompression) are refused with 413."},
    {.name = "max_buffered_bytes", .type = OptionType::Bytes, .default_value = "128MiB",
     .doc = "Request bytes held by all connections together (bodies as they arrive and decompressed); a request "
            "that would pass it is answered 503 with Retry-After, before its body is read when it has a "
            "Content-Length."},
    {.name = "max_connections", .type = OptionType::Integer, .default_value = "1024",
     .doc = "Open connections. From 7/8 of it on, the connection idle the longest is closed for each new one; "
            "beyond it, with none idle, new ones are answered 503 and closed."},
    {.name = "max_connections_per_address", .type = OptionType::Integer, .default_value = "256",
     .doc = "Open connections from one client address (0: no limit); beyond it that address's longest idle one is "
            "closed, or the new one answered 503. Behind a proxy every client has the proxy's address: raise it."},
    {.name = "header_timeout", .type = OptionType::Duration, .default_value = "10s",
     .doc = "Time from accept (a new connection) or from a request's first byte (keep-alive) to the end of its "
            "headers: a socket that connects and says nothing is closed after it."},
    {.name = "body_timeout", .type = OptionType::Duration, .default_value = "30s",
     .doc = "Time from the end of the headers to the end of the body."},
    {.name = "idle_timeout", .type = OptionType::Duration, .default_value = "60s",
     .doc = "An idle keep-alive connection is closed after this long."},
    {.name = "auth.strategy", .type = OptionType::Enum, .default_value = "none", .choices = {"none", "bearer", "basic"},
     .doc = "`bearer`: `Authorization: Bearer <one of auth.tokens>`; `basic`: auth.username/auth.password."},
    {.name = "auth.tokens", .type = OptionType::StringList, .doc = "Accepted bearer tokens (use ${ENV} for secrets)."},
    {.name = "auth.username", .type = OptionType::String, .doc = "Basic auth user."},
    {.name = "auth.password", .type = OptionType::String, .doc = "Basic auth password."},
    {.name = "headers_to_fields", .type = OptionType::Map,
     .doc = "Header name -> field path to copy it into; a path starting with `%` goes to the event's metadata."},
    {.name = "query_to_fields", .type = OptionType::Map,
     .doc = "Query parameter -> field path, like headers_to_fields."},
    {.name = "request_id_header", .type = OptionType::String, .default_value = "X-Request-Id",
     .doc = "Header carrying the request id: kept when valid, else a UUIDv4 is made; echoed in the response."},
    {.name = "acknowledgements", .type = OptionType::Bool, .default_value = "false",
     .doc = "Answer 200 only once every event of the request is delivered by every sink it reaches, written to "
            "every downstream disk buffer (after fsync with `sync: always`), or dead-lettered; 503 with Retry-After "
            "when any was not (dropped by a full buffer, refused by a sink), so the client sends it again."},
};

struct FieldCopy {
  std::string from;  // header name (lower case) or query parameter
  std::string to;    // field path, without the `%`
  bool to_metadata = false;
};

Result<std::vector<FieldCopy>> field_copies(const Options& options, std::string_view name, bool lower_case) {
  std::vector<FieldCopy> copies;
  const Value* map = options.find(name);
  if (map == nullptr) return copies;
  for (const Member& m : map->members()) {
    if (!m.value.is_string() || m.value.as_string().empty() || m.value.as_string() == "%") {
      return options.error_at(name, fmt::format("'{}' must map '{}' to a field path", name, m.key));
    }
    std::string_view to = m.value.as_string();
    bool meta = to.front() == '%';
    copies.push_back({lower_case ? http::lower_case(m.key) : std::string(m.key), std::string(meta ? to.substr(1) : to), meta});
  }
  return copies;
}

constexpr std::size_t kRequestsOutput = 1;  // outputs(): "", "requests"

class HttpServerSource final : public Source {
 public:
  static Result<std::unique_ptr<HttpServerSource>> create(const Options& options) {
    auto self = std::make_unique<HttpServerSource>();
    self->server_options_.address = std::string(options.string("address"));
    if (auto parsed = http::parse_address(self->server_options_.address); !parsed.ok()) {
      return options.error_at("address", parsed.error().message());
    }
    self->server_options_.max_body_bytes = options.bytes("max_body_bytes");
    self->server_options_.max_connections = static_cast<std::size_t>(std::max<std::int64_t>(1, options.integer("max_connections")));
    self->server_options_.max_buffered_bytes = options.bytes("max_buffered_bytes");
    if (self->server_options_.max_buffered_bytes < self->server_options_.max_body_bytes) {
      return options.error_at("max_buffered_bytes",
                              fmt::format("max_buffered_bytes ({}) is below max_body_bytes ({}): no body that large "
                                          "could ever be taken",
                                          self->server_options_.max_buffered_bytes, self->server_options_.max_body_bytes));
    }
    self->server_options_.max_connections_per_address =
        static_cast<std::size_t>(std::max<std::int64_t>(0, options.integer("max_connections_per_address")));
    auto ms = [&](std::string_view key) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(options.duration(key));
    };
    self->server_options_.header_timeout = ms("header_timeout");
    self->server_options_.body_timeout = ms("body_timeout");
    self->server_options_.idle_timeout = ms("idle_timeout");
    self->server_options_.log_name = options.component_name();
    self->path_ = std::string(options.string("path"));
    if (self->path_.empty() || self->path_.front() != '/') return options.error_at("path", "path must start with '/'");
    self->strict_path_ = options.boolean("strict_path");
    std::string_view codec = options.string("decoding.codec");
    self->codec_ = codec == "ndjson" ? BodyCodec::Ndjson
                   : codec == "text" ? BodyCodec::Text
                   : codec == "cvat_client" ? BodyCodec::CvatClient
                                            : BodyCodec::Json;
    std::string_view strategy = options.string("auth.strategy");
    if (strategy == "bearer") {
      self->tokens_ = options.strings("auth.tokens");
      if (self->tokens_.empty()) return options.error_at("auth.strategy", "auth.strategy bearer needs auth.tokens");
    } else if (strategy == "basic") {
      if (!options.has("auth.username") || !options.has("auth.password")) {
        return options.error_at("auth.strategy", "auth.strategy basic needs auth.username and auth.password");
      }
      self->basic_ = "Basic " + http::basic_credentials(options.string("auth.username"), options.string("auth.password"));
    }
    auto headers = field_copies(options, "headers_to_fields", true);
    if (!headers.ok()) return headers.error();
    self->header_copies_ = std::move(headers.value());
    auto query = field_copies(options, "query_to_fields", false);
    if (!query.ok()) return query.error();
    self->query_copies_ = std::move(query.value());
    self->request_id_header_ = http::lower_case(options.string("request_id_header"));
    self->acknowledgements_ = options.boolean("acknowledgements");
    return self;
  }

  std::vector<std::string> outputs() const override { return {"", "requests"}; }

  Status start(SourceContext& ctx) override {
    ctx_ = &ctx;
    uuids_.reseed(ctx.random().next());
    // Records for `NAME.requests` are made only while something reads it (a reload may
    // connect or disconnect a reader); what a record needs is read off the response then.
    requests_ = std::make_unique<RequestRecords>(ctx, kRequestsOutput);
    if (Status started = requests_->start(); !started.ok()) return started;
    server_options_.on_answered = [this](const http::AnsweredRequest& a) {
      if (!ctx_->output_connected(kRequestsOutput)) return;
      std::string_view request_id;
      for (const http::Header& h : a.response.headers) {
        if (h.name == "x-request-id") request_id = h.value;  // as handle() sets it
      }
      requests_->record(a, request_id, ctx_->clock().now());
    };
    // weir_http_limit_<bound>_total: what each bound refused or closed.
    for (std::size_t i = 0; i < http::kLimitCount; ++i) {
      std::string_view limit = http::limit_name(static_cast<http::Limit>(i));
      limit_counters_[i] = ctx.metrics().named_metric(fmt::format("http_limit_{}_total", limit),
                                                      fmt::format("Connections or requests refused or closed by {}", limit),
                                                      false);
    }
    NamedMetric* buffered = ctx.metrics().named_metric(
        "http_buffered_bytes", "Request bytes held now, counted against max_buffered_bytes", true);
    server_options_.on_buffered = [buffered](std::size_t bytes) {
      if (buffered != nullptr) buffered->value.store(static_cast<double>(bytes), std::memory_order_relaxed);
    };
    server_options_.on_limit = [this](http::Limit limit) {
      if (NamedMetric* m = limit_counters_[static_cast<std::size_t>(limit)]) m->count.fetch_add(1, std::memory_order_relaxed);
    };
    server_ = std::make_unique<http::Server>(
        ctx.loop(), server_options_, [this](http::Request& r, http::Responder responder) { handle(r, std::move(responder)); },
        [this](const http::Request& head) { return check(head); });
    Status started = server_->start();
    if (!started.ok()) return started;
    log::info(ctx.name(), "listening on {} (port {}), path {}", server_options_.address, server_->port(), path_);
    return {};
  }

  void resume() override { requests_->resume(); }

  // A request body, decoded as handle() decodes one.
  bool decode_raw(std::string_view raw, EpochNanos now, EventBatch& batch, std::vector<DecodeRejection>& rejected) const override {
    auto body = std::make_shared<std::string>(raw);
    std::vector<BodyRejection> refused;
    BodyDecoder(codec_).decode(*body, now, batch, refused);
    batch.retain(body);
    for (BodyRejection& r : refused) {
      rejected.push_back(DecodeRejection{r.line, r.line ? std::move(r.reason) : "request body: " + r.reason, std::move(r.raw)});
    }
    return true;
  }

  void stop() override {
    if (stopping_) return;
    stopping_ = true;
    // Requests in progress are answered (in ack mode, once delivered) before we finish.
    server_->stop([this] {
      requests_->stop();  // the last requests' records, then the end
      ctx_->finished();
    });
  }

 private:
  std::optional<http::Response> check(const http::Request& head) {
    bool path_ok = strict_path_ ? head.path == path_
                                : head.path.compare(0, path_.size(), path_) == 0 &&
                                      (head.path.size() == path_.size() || path_.back() == '/' || head.path[path_.size()] == '/');
    if (!path_ok) return http::Response::error(404, fmt::format("no events are taken at {}; post them to {}", head.path, path_));
    if (head.method != "POST" && head.method != "PUT") {
      auto r = http::Response::error(405, "use POST (or PUT) to send events");
      r.headers.push_back({"allow", "POST, PUT"});
      return r;
    }
    if (!authorized(head)) {
      ctx_->metrics().errors.add();
      auto r = http::Response::error(401, "missing or wrong credentials");
      r.headers.push_back({"www-authenticate", basic_.empty() ? "Bearer" : "Basic realm=\"weir\""});
      return r;
    }
    if (stopping_) return http::Response::error(503, "shutting down");
    if (!ctx_->downstream_ready()) {
      // Refuse before reading the body: never take events and then drop them.
      auto r = http::Response::error(503, "pipeline is full, retry later");
      r.headers.push_back({"retry-after", "1"});
      return r;
    }
    return std::nullopt;
  }

  bool authorized(const http::Request& head) const {
    if (tokens_.empty() && basic_.empty()) return true;
    const std::string* given = head.header("authorization");
    if (given == nullptr) return false;
    if (!basic_.empty()) return http::same_secret(*given, basic_);
    bool ok = false;
    for (const std::string& token : tokens_) ok |= http::same_secret(*given, "Bearer " + token);
    return ok;
  }

  std::string request_id(const http::Request& r) {
    const std::string* incoming = r.header(request_id_header_);
    if (incoming != nullptr && valid_request_id(*incoming)) return *incoming;
    return uuids_.next();
  }

  void handle(http::Request& request, http::Responder responder) {
    std::string id = request_id(request);
    // Asked again now that the body is in: many requests may have passed check() before
    // any of them was emitted. So what is accepted passes the channel bound by at most
    // this one batch; the client keeps the rest and sends it again.
    if (!ctx_->downstream_ready()) {
      http::Response r = http::Response::error(503, "pipeline is full, retry later");
      r.headers.push_back({"retry-after", "1"});
      r.headers.push_back({"x-request-id", id});
      return responder.send(std::move(r));
    }
    auto body = std::make_shared<std::string>(std::move(request.body));
    auto batch = EventBatch::create();
    std::vector<BodyRejection> rejected;
    BodyDecoder(codec_).decode(*body, ctx_->clock().now(), *batch, rejected);
    batch->set_byte_size(body->size());
    if (codec_ == BodyCodec::Text) batch->retain(body);

    for (const BodyRejection& r : rejected) {
      ctx_->dead_letter_raw(r.raw, r.line, r.line ? r.reason : "request body: " + r.reason);
    }
    std::size_t accepted = batch->size();
    auto answer = [id, accepted, rejected = rejected.size()](int status, std::string_view error) {
      ByteBuffer body;
      body.append(fmt::format(R"({{"accepted":{},"rejected":{},"request_id":)", accepted, rejected));
      write_json_string(id, body);
      if (!error.empty()) {
        body.append(",\"error\":");
        write_json_string(error, body);
      }
      body.push_back('}');
      http::Response response = http::Response::json(status, std::string(body.view()));
      response.headers.push_back({"x-request-id", id});
      return response;
    };
    if (accepted == 0) {
      if (rejected.empty()) return responder.send(answer(200, ""));
      const BodyRejection& first = rejected.front();
      std::string where = first.line ? fmt::format("line {}: ", first.line) : std::string();
      return responder.send(answer(400, where + first.reason));
    }

    Arena& arena = batch->arena();
    Value id_value = Value::string(arena, id);
    for (Event& event : batch->events()) {
      if (!event.metadata.is_object()) event.metadata = Value::object(arena, 2);
      event.metadata.set(arena, "request_id", id_value);
      copy_fields(request, event, arena);
    }
    if (acknowledgements_) {
      batch->add_ack(Acknowledgement::make([responder, answer](DeliveryStatus status, const std::string& reason) mutable {
        if (status == DeliveryStatus::Delivered) return responder.send(answer(200, ""));
        // Not delivered (dropped by a full buffer, refused by a sink): the client keeps
        // the events and sends them again.
        http::Response response = answer(503, "not delivered: " + reason);
        response.headers.push_back({"retry-after", "1"});
        responder.send(std::move(response));
      }));
      ctx_->emit(std::move(batch));
      return;
    }
    ctx_->emit(std::move(batch));
    responder.send(answer(200, ""));
  }

  void copy_fields(const http::Request& request, Event& event, Arena& arena) {
    auto put = [&](const FieldCopy& copy, const std::string& value) {
      Value v = Value::string(arena, value);
      if (copy.to_metadata) event.metadata.set_path(arena, arena.copy(copy.to), v);
      else event.fields.set_path(arena, arena.copy(copy.to), v);
    };
    for (const FieldCopy& copy : header_copies_) {
      if (const std::string* value = request.header(copy.from)) put(copy, *value);
    }
    for (const FieldCopy& copy : query_copies_) {
      if (auto value = request.query_param(copy.from)) put(copy, *value);
    }
  }

  SourceContext* ctx_ = nullptr;
  http::ServerOptions server_options_;
  std::array<NamedMetric*, http::kLimitCount> limit_counters_{};  // by http::Limit
  std::unique_ptr<RequestRecords> requests_;  // before server_: its answers may come while it closes
  std::unique_ptr<http::Server> server_;
  std::string path_;
  bool strict_path_ = true;
  BodyCodec codec_ = BodyCodec::Json;
  std::vector<std::string> tokens_;
  std::string basic_;
  std::vector<FieldCopy> header_copies_;
  std::vector<FieldCopy> query_copies_;
  std::string request_id_header_;
  bool acknowledgements_ = false;
  bool stopping_ = false;
  UuidGenerator uuids_;
};

}  // namespace

WEIR_REGISTER_SOURCE("http_server",
                     "Events POSTed over HTTP (JSON, NDJSON, text, CVAT client batches); output `NAME.requests`: a "
                     "record per request answered, in the shape `monitoring` reads",
                     kSchema,
                     HttpServerSource::create);

}  // namespace weir::plugins
