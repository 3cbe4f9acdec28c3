// `request_id` transform: every event gets a request id. The HTTP request's id (metadata
// `request_id`, set by the http_server source) comes first, so all events of one request
// share the id the client got back; else an id already at the target is kept; else a new
// one is made. The target may sit inside a field that holds JSON text, as CVAT keeps it
// (`payload` -> `request.id`): the text is parsed, changed and written back.
#include <cstring>

#include <fmt/format.h>

#include "weir/field_path.hpp"
#include "weir/ids.hpp"
#include "weir/json.hpp"
#include "weir/registry.hpp"

namespace weir::plugins {
namespace {

const OptionSchema kSchema = {
    {.name = "target", .type = OptionType::String, .default_value = "payload.request.id",
     .doc = "Where the id goes (a dotted path)."},
    {.name = "json_field", .type = OptionType::String, .default_value = "payload",
     .doc = "When the target's first segment is this field and it holds JSON text, the rest of the path is set "
            "inside that JSON (CVAT's payload). Empty: the target is a plain field path."},
    {.name = "generate", .type = OptionType::Enum, .default_value = "uuid", .choices = {"uuid", "hex32"},
     .doc = "New ids: UUIDv4, or 32 hex digits (nginx's $request_id form)."},
    {.name = "overwrite", .type = OptionType::Bool, .default_value = "false",
     .doc = "Replace an id already at the target (default: keep it)."},
    {.name = "on_bad_json", .type = OptionType::Enum, .default_value = "keep", .choices = {"keep", "dead_letter"},
     .doc = "When the JSON field holds text that is not a JSON object: `keep` the event unchanged (counted as an "
            "error) or `dead_letter` it."},
};

class RequestId final : public Transform {
 public:
  static Result<std::unique_ptr<RequestId>> create(const Options& o) {
    auto self = std::make_unique<RequestId>();
    self->target_ = std::string(o.string("target"));
    if (self->target_.empty() || self->target_.front() == '.' || self->target_.back() == '.') {
      return o.error_at("target", "target must be a field path like payload.request.id");
    }
    std::string json_field(o.string("json_field"));
    if (!json_field.empty() && self->target_.compare(0, json_field.size() + 1, json_field + ".") == 0) {
      self->json_field_ = json_field;
      self->json_path_ = FieldPath(json_field);
      self->inner_path_ = self->target_.substr(json_field.size() + 1);
      // "request.id" -> `"request":{"id":` ... `}`: the text spliced around the id.
      std::string_view rest = self->inner_path_;
      self->first_key_ = std::string(rest.substr(0, rest.find('.')));
      ByteBuffer open;
      while (true) {
        auto dot = rest.find('.');
        write_json_string(rest.substr(0, dot), open);
        open.push_back(':');
        if (dot == std::string_view::npos) break;
        open.push_back('{');
        self->splice_close_ += '}';
        rest.remove_prefix(dot + 1);
      }
      self->splice_open_ = std::string(open.view());
    }
    self->target_path_ = FieldPath(self->target_);
    self->hex_ = o.string("generate") == "hex32";
    self->overwrite_ = o.boolean("overwrite");
    self->dead_letter_bad_json_ = o.string("on_bad_json") == "dead_letter";
    return self;
  }

  Status start(TransformContext& ctx) override {
    uuids_.reseed(ctx.random().next());  // --seed under replay: the same ids every time
    return {};
  }

  void process(BatchPtr batch, TransformContext& ctx) override {
    Arena& arena = batch->arena();
    std::vector<Event>& events = batch->events();
    std::size_t kept = 0;
    for (Event& event : events) {
      if (!json_field_.empty() ? tag_json(event, arena, ctx) : (tag_plain(event, arena), true)) events[kept++] = event;
    }
    events.resize(kept);
    ctx.emit(std::move(batch));
  }

 private:
  // The id for this event: the HTTP request's, else a new one (in the batch's arena).
  Value request_id_of(const Event& event, Arena& arena) {
    if (const Value* id = metadata_id_.find(event.metadata); id != nullptr && id->is_string()) return *id;
    char* text = static_cast<char*>(arena.allocate(36, 1));
    uuids_.next_into(text);
    if (!hex_) return Value::string_view(std::string_view(text, 36));
    std::size_t n = 0;
    for (std::size_t i = 0; i < 36; ++i) {
      if (text[i] != '-') text[n++] = text[i];
    }
    return Value::string_view(std::string_view(text, 32));
  }

  // JSON text of an id: ids made here and ids the HTTP source accepted need no escaping
  // (hex, '-' and [A-Za-z0-9._:+/=@-]); anything else goes through the encoder.
  void write_id(const Value& id, ByteBuffer& out) {
    std::string_view text = id.as_string();
    unsigned escapes = 0;  // no early exit: the loop vectorises
    for (char c : text) {
      auto u = static_cast<unsigned char>(c);
      escapes |= static_cast<unsigned>(u == '"') | static_cast<unsigned>(u == '\\') | static_cast<unsigned>(u < 0x20);
    }
    if (escapes != 0) return write_json(id, out);
    char* at = out.ensure(text.size() + 2);
    at[0] = '"';
    std::memcpy(at + 1, text.data(), text.size());
    at[text.size() + 1] = '"';
    out.commit(text.size() + 2);
  }

  static bool present(const Value* v) { return v != nullptr && !v->is_null() && !(v->is_string() && v->as_string().empty()); }

  void tag_plain(Event& event, Arena& arena) {
    if (!overwrite_ && present(target_path_.find(event.fields))) return;
    target_path_.set(arena, event.fields, request_id_of(event, arena));
  }

  // Returns false when the event was dead-lettered.
  bool tag_json(Event& event, Arena& arena, TransformContext& ctx) {
    Value* field = json_path_.find(event.fields);
    Value inner;
    bool as_text = true;
    if (field == nullptr || field->is_null()) {
      inner = Value::object(arena, 1);
    } else if (field->is_object()) {
      inner = *field;  // already structured (an upstream enrich parsed it): set in place
      as_text = false;
    } else {
      if (field->is_string() && splice(*field, event, arena)) return true;
      auto parsed = field->is_string() ? parser_.parse(field->as_string(), arena)
                                       : Result<Value>(Error(fmt::format("it is {}", kind_name(field->kind()))));
      if (!parsed.ok() || !parsed.value().is_object()) {
        std::string reason = fmt::format("request_id: '{}' is not a JSON object ({})", json_field_,
                                         parsed.ok() ? "a JSON " + std::string(kind_name(parsed.value().kind())) : parsed.error().message());
        if (dead_letter_bad_json_) {
          ctx.dead_letter(event, reason);
          return false;
        }
        ctx.metrics().errors.add();
        return true;
      }
      inner = parsed.value();
    }
    if (!overwrite_ && present(inner.find_path(inner_path_))) return true;
    inner.set_path(arena, inner_path_, request_id_of(event, arena));
    if (as_text) {
      text_.clear();
      write_json(inner, text_);
      Value text = Value::string(arena, text_.view());
      if (field != nullptr) *field = text;
      else json_path_.set(arena, event.fields, text);
    }
    return true;
  }

  // The common case, a payload object without the first segment of the inner path (CVAT's
  // client events: no "request" yet): the id is spliced into the text before its closing
  // brace, which keeps the original text and skips decoding and re-encoding it.
  bool splice(Value& field, const Event& event, Arena& arena) {
    std::string_view text = field.as_string();
    auto has = parser_.object_has_key(text, first_key_);
    if (!has.ok() || has.value()) return false;  // errors and existing keys take the full path
    std::size_t close = text.find_last_of('}');
    bool empty = text.find_first_not_of(" \t\r\n", text.find('{') + 1) == close;
    id_text_.clear();
    write_id(request_id_of(event, arena), id_text_);
    // Written once, straight into the batch's arena.
    std::size_t size = text.size() + (empty ? 0 : 1) + splice_open_.size() + id_text_.size() + splice_close_.size();
    char* out = static_cast<char*>(arena.allocate(size, 1));
    char* at = out;
    auto put = [&at](std::string_view part) {
      std::memcpy(at, part.data(), part.size());
      at += part.size();
    };
    put(text.substr(0, close));
    if (!empty) *at++ = ',';
    put(splice_open_);
    put(id_text_.view());
    put(splice_close_);
    put(text.substr(close));
    field = Value::string_view(std::string_view(out, size));
    return true;
  }

  std::string target_;
  std::string json_field_;
  std::string inner_path_;
  std::string first_key_, splice_open_, splice_close_;
  FieldPath json_path_, target_path_, metadata_id_{"request_id"};
  ByteBuffer id_text_;
  bool hex_ = false;
  bool overwrite_ = false;
  bool dead_letter_bad_json_ = false;
  UuidGenerator uuids_;
  JsonParser parser_;
  ByteBuffer text_;
};

}  // namespace

WEIR_REGISTER_TRANSFORM("request_id", "Gives every event a request id (the HTTP request's, an existing one, or new)",
                        kSchema, RequestId::create);

}  // namespace weir::plugins
