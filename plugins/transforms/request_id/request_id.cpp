// `request_id` transform: every event gets a request id. The HTTP request's id (metadata
// `request_id`, set by the http_server source) comes first, so all events of one request
// share the id the client got back; else an id already at the target is kept; else a new
// one is made. The target may sit inside a field that holds JSON text, as CVAT keeps it
// (`payload` -> `request.id`): the text is parsed, changed and written back.
//
// Written on the plugin SDK alone (weir/sdk.hpp), as an external plugin would be: the proof
// that the SDK is enough for a transform on weir's hot path. Only its registration, at the
// end, is weir's own.
#include <cstring>
#include <string>

#include "weir/registry.hpp"
#include "weir/sdk.hpp"

// Outside namespace weir, so that the SDK's names are the only ones in sight.
namespace {

using namespace weir::sdk;

class RequestId {
 public:
  static constexpr const char* type = "request_id";
  static constexpr const char* summary = "Gives every event a request id (the HTTP request's, an existing one, or new)";
  // process() needs nothing but the batch and its own members: it may run where the batch
  // was decoded (ADR 015).
  static constexpr bool runs_off_loop = true;
  static inline const std::vector<Option> options = {
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

  explicit RequestId(const Options& o) : target_(o.string("target")) {
    if (target_.empty() || target_.front() == '.' || target_.back() == '.') {
      o.fail("target", "target must be a field path like payload.request.id");
    }
    std::string json_field = o.string("json_field");
    if (!json_field.empty() && target_.compare(0, json_field.size() + 1, json_field + ".") == 0) {
      json_field_ = json_field;
      json_path_ = Path(json_field);
      const std::string inner = target_.substr(json_field.size() + 1);
      // "request.id" -> `"request":{"id":` ... `}`: the text spliced around the id. A
      // segment JSON would escape turns splicing off (every event takes the full path).
      std::string_view rest = inner;
      splice_ok_ = !needs_escaping(inner);
      first_key_ = std::string(rest.substr(0, rest.find('.')));
      while (true) {
        auto dot = rest.find('.');
        splice_open_ += '"';
        splice_open_ += rest.substr(0, dot);  // path segments hold no characters JSON escapes
        splice_open_ += "\":";
        if (dot == std::string_view::npos) break;
        splice_open_ += '{';
        splice_close_ += '}';
        rest.remove_prefix(dot + 1);
      }
    }
    target_path_ = Path(target_);
    hex_ = o.string("generate") == "hex32";
    overwrite_ = o.boolean("overwrite");
    dead_letter_bad_json_ = o.string("on_bad_json") == "dead_letter";
  }

  void process(Batch& batch, Context& ctx) {
    // Both fields an event needs, read for many events per call into weir.
    FieldReader<2> read(batch, json_field_.empty() ? target_path_ : json_path_, metadata_id_);
    if (json_field_.empty()) {
      for (Event event : batch) {
        auto [field, request_id] = read(event);
        tag_plain(event, field, request_id, ctx);
      }
      ctx.emit(batch);
      return;
    }
    // First the fields of every event and, for the texts a splice may take, whether each
    // is an object that has the first key already: one call into weir for the batch (a
    // parse per payload was two thirds of this transform's time).
    fields_.clear();
    texts_.clear();
    for (Event event : batch) {
      auto [field, request_id] = read(event);
      fields_.push_back({event.index(), field, request_id});
      if (splice_ok_ && field.is_string()) texts_.push_back(field.as_string());
    }
    has_key_.resize(texts_.size());
    if (!texts_.empty()) ctx.json_objects_have_key(texts_, first_key_, has_key_);
    std::size_t text = 0;
    for (const Fields& f : fields_) {
      Event event(batch, f.index);
      int has_key = splice_ok_ && f.field.is_string() ? has_key_[text++] : kNotAsked;
      tag_json(event, f.field, f.request_id, has_key, batch, ctx);
    }
    ctx.emit(batch);
  }

 private:
  // The id for this event: the HTTP request's (`request_id`, read with the event's other
  // field), else a new one (hex32: into `scratch`).
  std::string_view request_id_of(const Value& request_id, Context& ctx, char* scratch) {
    if (request_id.is_string()) return request_id.as_string();
    if (next_uuid_ == kUuidsAhead) {  // weir makes them kUuidsAhead at a time: one call, the same sequence
      ctx.uuid_v4(uuids_, kUuidsAhead);
      next_uuid_ = 0;
    }
    const char* uuid = uuids_ + 36 * next_uuid_++;
    if (!hex_) return {uuid, 36};
    std::size_t n = 0;
    for (std::size_t i = 0; i < 36; ++i) {
      if (uuid[i] != '-') scratch[n++] = uuid[i];
    }
    return {scratch, 32};
  }

  // JSON text of an id: ids made here and ids the HTTP source accepted need no escaping
  // (hex, '-' and [A-Za-z0-9._:+/=@-]); anything else goes through the encoder.
  static bool needs_escaping(std::string_view text) {
    unsigned escapes = 0;  // no early exit: the loop vectorises
    for (char c : text) {
      auto u = static_cast<unsigned char>(c);
      escapes |= static_cast<unsigned>(u == '"') | static_cast<unsigned>(u == '\\') | static_cast<unsigned>(u < 0x20);
    }
    return escapes != 0;
  }

  static bool present(const Value& v) { return v && !v.is_null() && !(v.is_string() && v.as_string().empty()); }

  void tag_plain(Event& event, const Value& target, const Value& request_id, Context& ctx) {
    if (!overwrite_ && present(target)) return;
    set_id(event, request_id, ctx);
  }

  // has_key: json_objects_have_key's answer for the field's text, or kNotAsked.
  void tag_json(Event& event, Value field, const Value& request_id, int has_key, Batch& batch, Context& ctx) {
    if (field.is_object()) {  // already structured (an upstream enrich parsed it): set in place
      if (overwrite_ || !present(event.get(target_path_))) set_id(event, request_id, ctx);
      return;
    }
    if (has_key == 0 && splice(event, field, request_id, ctx)) return;
    if (field && !field.is_null() && !field.is_string()) {
      bad_json(event, ctx, std::string("it is ") + kind_text(field.kind()));
      return;
    }
    // The full path: the text decoded into the field, changed, and encoded back; the
    // original text put back when the id is kept or the text is not an object.
    std::string text;
    if (field.is_string()) {
      text = std::string(field.as_string());
      std::string error;
      if (!ctx.parse_json(batch, text, field, &error)) return bad_json(event, ctx, error);
      field = event.get(json_path_);  // read again: `field` holds what it was before
      if (!field.is_object()) {
        std::string kind = kind_text(field.kind());
        event.set(json_path_, text);
        return bad_json(event, ctx, "a JSON " + kind);
      }
    } else {
      event.set_object(json_path_);  // absent or null: a new object for the id
    }
    if (!overwrite_ && present(event.get(target_path_))) {
      event.set(json_path_, text);
      return;
    }
    set_id(event, request_id, ctx);
    event.set(json_path_, ctx.to_json(event.get(json_path_)));
  }

  void set_id(Event& event, const Value& request_id, Context& ctx) {
    char scratch[36];
    event.set(target_path_, request_id_of(request_id, ctx, scratch));
  }

  // A JSON field that is not an object: kept as it is (an error counted) or dead-lettered.
  void bad_json(Event& event, Context& ctx, const std::string& why) {
    std::string reason = "request_id: '" + json_field_ + "' is not a JSON object (" + why + ")";
    if (dead_letter_bad_json_) event.reject(reason);
    else ctx.count_errors();
  }

  static const char* kind_text(Kind kind) {
    switch (kind) {
      case Kind::Null: return "null";
      case Kind::Bool: return "boolean";
      case Kind::Int:
      case Kind::Uint: return "integer";
      case Kind::Double: return "float";
      case Kind::String: return "string";
      case Kind::Array: return "array";
      case Kind::Object: return "object";
    }
    return "value";
  }

  // The common case, a payload object without the first segment of the inner path (CVAT's
  // client events: no "request" yet; the caller checked that): the id is spliced into the
  // text before its closing brace, which keeps the original text and skips decoding and
  // re-encoding it. Errors and existing keys take the full path.
  bool splice(Event& event, const Value& field, const Value& request_id, Context& ctx) {
    std::string_view text = field.as_string();
    char scratch[36];
    std::string_view id = request_id_of(request_id, ctx, scratch);
    // Only a metadata id can need escaping (ids made here never do, and the HTTP source
    // accepts none that would): such an event takes the full path, which escapes it.
    if (needs_escaping(id)) return false;
    std::size_t close = text.find_last_of('}');
    bool empty = text.find_first_not_of(" \t\r\n", text.find('{') + 1) == close;
    // Written once, straight into the batch's memory.
    std::size_t size = text.size() + (empty ? 0 : 1) + splice_open_.size() + id.size() + 2 + splice_close_.size();
    std::string_view before = text.substr(0, close), after = text.substr(close);
    char* at = event.set_string(field, size);  // `text` stays readable: the old bytes are not reused
    auto put = [&at](std::string_view part) {
      std::memcpy(at, part.data(), part.size());
      at += part.size();
    };
    put(before);
    if (!empty) *at++ = ',';
    put(splice_open_);
    *at++ = '"';
    put(id);
    *at++ = '"';
    put(splice_close_);
    put(after);
    return true;
  }

  std::string target_;
  std::string json_field_;
  std::string first_key_, splice_open_, splice_close_;
  Path json_path_, target_path_, metadata_id_{"%request_id"};
  bool hex_ = false;
  bool overwrite_ = false;
  bool dead_letter_bad_json_ = false;
  bool splice_ok_ = false;
  static constexpr std::size_t kUuidsAhead = 64;
  static constexpr int kNotAsked = 2;
  struct Fields {
    std::size_t index;
    Value field, request_id;
  };
  std::vector<Fields> fields_;  // per batch, kept for their capacity
  std::vector<std::string_view> texts_;
  std::vector<int> has_key_;
  char uuids_[36 * kUuidsAhead];
  std::size_t next_uuid_ = kUuidsAhead;
};

WEIR_REGISTER_SDK_TRANSFORMS(RequestId);

}  // namespace
