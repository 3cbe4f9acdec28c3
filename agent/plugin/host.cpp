#include "plugin/host.hpp"

#include <algorithm>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "weir/buffer.hpp"
#include "weir/field_path.hpp"
#include "weir/log.hpp"
#include "weir/metrics.hpp"

#ifndef WEIR_VERSION
#define WEIR_VERSION "0.0.0"
#endif

namespace weir::plugin {

void HostBatch::mark(std::size_t i, std::uint8_t how) {
  if (batch == nullptr || i >= batch->size() || is_gone(i)) return;
  if (gone.size() < batch->size()) gone.resize(batch->size(), 0);
  gone[i] = how;
  (how == 1 ? removed : moved) += 1;
}

BatchPtr HostBatch::take_compacted() {
  if (batch != nullptr && removed + moved != 0) {
    std::vector<Event>& events = batch->events();
    std::size_t kept = 0;
    for (std::size_t i = 0; i < events.size(); ++i) {
      if (!is_gone(i)) events[kept++] = events[i];
    }
    events.resize(kept);
  }
  gone.clear();
  removed = moved = 0;
  arena = nullptr;  // the handle is spent
  return std::move(batch);
}

namespace {

// The opaque pointers are weir's own objects.
Value* V(weir_value* v) noexcept { return reinterpret_cast<Value*>(v); }
const Value* V(const weir_value* v) noexcept { return reinterpret_cast<const Value*>(v); }
weir_value* W(Value* v) noexcept { return reinterpret_cast<weir_value*>(v); }
const weir_value* W(const Value* v) noexcept { return reinterpret_cast<const weir_value*>(v); }
// A plugin's path: a FieldPath, from the event's metadata when written with a leading '%'.
struct HostPath {
  FieldPath path;
  bool metadata;
};
const FieldPath* P(const weir_path* p) noexcept { return &reinterpret_cast<const HostPath*>(p)->path; }
const HostPath& HP(const weir_path* p) noexcept { return *reinterpret_cast<const HostPath*>(p); }
ByteBuffer* B(weir_buffer* b) noexcept { return reinterpret_cast<ByteBuffer*>(b); }
const ByteBuffer* B(const weir_buffer* b) noexcept { return reinterpret_cast<const ByteBuffer*>(b); }
NamedMetric* M(weir_metric* m) noexcept { return reinterpret_cast<NamedMetric*>(m); }
const Options& O(const weir_options* o) noexcept { return *static_cast<const HostOptions*>(o)->options; }
HostContext& C(weir_context* c) noexcept { return *static_cast<HostContext*>(c); }
const HostContext& C(const weir_context* c) noexcept { return *static_cast<const HostContext*>(c); }
HostBatch& H(weir_batch* b) noexcept { return *static_cast<HostBatch*>(b); }
const HostBatch& H(const weir_batch* b) noexcept { return *static_cast<const HostBatch*>(b); }
std::string_view S(weir_str s) noexcept { return {s.data, s.size}; }
weir_str S(std::string_view s) noexcept { return {s.data(), s.size()}; }

// The batch's arena, or nullptr once the batch is emitted (its handle spent: writes through
// it are ignored rather than reaching events that are already downstream).
Arena* arena_of(weir_batch* b) noexcept { return H(b).arena; }
Event* event_of(weir_batch* b, std::size_t i) noexcept {
  HostBatch& h = H(b);
  if (h.batch == nullptr || i >= h.batch->size()) return nullptr;
  return &h.batch->events()[i];
}

void error_set(weir_error* error, weir_str message) noexcept {
  if (error != nullptr) error->error = Error(std::string(S(message)));
}

int option_is_set(const weir_options* o, const char* name) noexcept { return O(o).was_set(name) ? 1 : 0; }
int option_has(const weir_options* o, const char* name) noexcept { return O(o).has(name) ? 1 : 0; }
weir_str option_string(const weir_options* o, const char* name) noexcept { return S(O(o).string(name)); }
int64_t option_int(const weir_options* o, const char* name) noexcept { return O(o).integer(name); }
double option_double(const weir_options* o, const char* name) noexcept { return O(o).number(name); }
int option_bool(const weir_options* o, const char* name) noexcept { return O(o).boolean(name) ? 1 : 0; }
int64_t option_duration_ns(const weir_options* o, const char* name) noexcept { return O(o).duration(name).count(); }
uint64_t option_bytes(const weir_options* o, const char* name) noexcept { return O(o).bytes(name); }
size_t option_list_size(const weir_options* o, const char* name) noexcept {
  const Value* v = O(o).find(name);
  return v != nullptr && v->is_array() ? v->elements().size() : 0;
}
weir_str option_list_item(const weir_options* o, const char* name, size_t index) noexcept {
  const Value* v = O(o).find(name);
  if (v == nullptr || !v->is_array() || index >= v->elements().size()) return {nullptr, 0};
  return S(v->elements()[index].as_string());
}
const weir_value* option_value(const weir_options* o, const char* name) noexcept { return W(O(o).find(name)); }
weir_str option_component_name(const weir_options* o) noexcept { return S(O(o).component_name()); }
void option_error(const weir_options* o, const char* name, weir_str message, weir_error* error) noexcept {
  if (error != nullptr) error->error = O(o).error_at(name, std::string(S(message)));
}

size_t batch_size(const weir_batch* b) noexcept {
  const HostBatch& h = H(b);
  return h.batch == nullptr ? 0 : h.batch->size();
}
weir_value* batch_fields(weir_batch* b, size_t i) noexcept {
  Event* e = event_of(b, i);
  return e == nullptr ? nullptr : W(&e->fields);
}
weir_value* batch_metadata(weir_batch* b, size_t i) noexcept {
  Event* e = event_of(b, i);
  return e == nullptr ? nullptr : W(&e->metadata);
}
void batch_remove(weir_batch* b, size_t i) noexcept { H(b).mark(i, 1); }
int batch_is_removed(const weir_batch* b, size_t i) noexcept { return H(b).is_gone(i) ? 1 : 0; }
weir_batch* batch_new(weir_context* c) noexcept { return new HostBatch(EventBatch::create(), &C(c), true); }
size_t batch_move_event(weir_batch* to, weir_batch* from, size_t i) noexcept {
  HostBatch& dst = H(to);
  HostBatch& src = H(from);
  Event* e = event_of(from, i);
  if (e == nullptr || dst.batch == nullptr || &dst == &src || src.is_gone(i)) return SIZE_MAX;
  if (dst.last_adopted != src.serial) {
    dst.batch->adopt_from(*src.batch);
    dst.last_adopted = src.serial;
  }
  dst.batch->events().push_back(*e);
  src.mark(i, 2);
  return dst.batch->size() - 1;
}
weir_value* batch_add_event(weir_batch* b) noexcept {
  HostBatch& h = H(b);
  if (h.batch == nullptr) return nullptr;
  return W(&h.batch->add_event().fields);
}
void batch_release(weir_batch* b) noexcept {
  if (b == nullptr || !H(b).heap) return;
  HostBatch& h = H(b);
  // Its events go nowhere on purpose: counted, as a filter's are.
  if (h.context != nullptr && h.context->ctx != nullptr) h.context->ctx->metrics().events_dropped.add(h.remaining() + h.removed);
  delete &h;
}

int32_t value_kind(const weir_value* v) noexcept { return static_cast<int32_t>(V(v)->kind()); }
int value_bool(const weir_value* v) noexcept { return V(v)->is_bool() && V(v)->as_bool() ? 1 : 0; }
int64_t value_int(const weir_value* v) noexcept { return V(v)->is_int() ? V(v)->as_int() : 0; }
uint64_t value_uint(const weir_value* v) noexcept {
  if (V(v)->is_uint()) return V(v)->as_uint();
  return V(v)->is_int() && V(v)->as_int() >= 0 ? static_cast<uint64_t>(V(v)->as_int()) : 0;
}
double value_number(const weir_value* v) noexcept { return V(v)->is_number() ? V(v)->to_double() : 0.0; }
weir_str value_string(const weir_value* v) noexcept { return V(v)->is_string() ? S(V(v)->as_string()) : weir_str{"", 0}; }
size_t value_size(const weir_value* v) noexcept { return V(v)->is_string() || V(v)->is_array() || V(v)->is_object() ? V(v)->size() : 0; }
weir_str object_key(const weir_value* o, size_t i) noexcept {
  auto members = V(o)->members();
  return i < members.size() ? S(members[i].key) : weir_str{"", 0};
}
weir_value* object_value(weir_value* o, size_t i) noexcept {
  auto members = V(o)->members();
  return i < members.size() ? W(&members[i].value) : nullptr;
}
weir_value* object_find(weir_value* o, weir_str key) noexcept { return W(V(o)->find(S(key))); }
weir_value* array_element(weir_value* a, size_t i) noexcept {
  if (!V(a)->is_array()) return nullptr;
  auto elements = V(a)->elements();
  return i < elements.size() ? W(&elements[i]) : nullptr;
}

weir_path* path_new(weir_str dotted) noexcept {
  if (dotted.size == 0) return nullptr;
  std::string_view text = S(dotted);
  bool metadata = text.front() == '%';
  if (metadata) text.remove_prefix(1);
  if (text.empty()) return nullptr;
  return reinterpret_cast<weir_path*>(new HostPath{FieldPath(text), metadata});
}
void path_free(weir_path* p) noexcept { delete reinterpret_cast<HostPath*>(p); }
weir_value* path_find(const weir_path* p, weir_value* root) noexcept { return W(P(p)->find(*V(root))); }
weir_value* path_ensure(weir_batch* b, const weir_path* p, weir_value* root) noexcept {
  if (Value* found = P(p)->find(*V(root))) return W(found);
  Arena* arena = arena_of(b);
  if (arena == nullptr) return nullptr;
  P(p)->set(*arena, *V(root), Value::null());
  return W(P(p)->find(*V(root)));
}
int path_remove(const weir_path* p, weir_value* root) noexcept { return P(p)->erase(*V(root)) ? 1 : 0; }
weir_view view_of(Value* v) noexcept {
  if (v == nullptr) return weir_view{nullptr, WEIR_NULL, 0, {nullptr, 0}};
  weir_view view{W(v), static_cast<int32_t>(v->kind()), 0, {nullptr, 0}};
  if (v->is_string()) view.string = S(v->as_string());
  return view;
}
Value* find_in(Event& e, const weir_path* p) noexcept {
  const HostPath& path = HP(p);
  if (!path.metadata) return path.path.find(e.fields);
  return e.metadata.is_object() ? path.path.find(e.metadata) : nullptr;
}
// The event a plugin reads, asking for the memory of the ones after it: plugins mostly go
// through a batch in order, and the first touch of a decoded event is a cache miss (the
// built-ins' loops prefetch the same way).
Event* event_read(weir_batch* b, size_t i) noexcept {
  HostBatch& h = H(b);
  if (h.batch == nullptr || i >= h.batch->size()) return nullptr;
  std::vector<Event>& events = h.batch->events();
  prefetch_ahead(events, i);
  return &events[i];
}
weir_view event_get(weir_batch* b, size_t i, const weir_path* p) noexcept {
  Event* e = event_read(b, i);
  return view_of(e == nullptr ? nullptr : find_in(*e, p));
}
size_t batch_get_n(weir_batch* b, size_t first, size_t n, const weir_path* const* paths, size_t count, weir_view* out) noexcept {
  HostBatch& h = H(b);
  if (h.batch == nullptr || first >= h.batch->size()) return 0;
  std::vector<Event>& events = h.batch->events();
  n = std::min(n, events.size() - first);
  if (count == 1 && paths[0] != nullptr && !HP(paths[0]).metadata) {  // the common case, without the general loop's checks
    const FieldPath& path = *P(paths[0]);
    for (size_t e = 0; e < n; ++e) {
      prefetch_ahead(events, first + e);
      out[e] = view_of(path.find(events[first + e].fields));
    }
    return n;
  }
  for (size_t e = 0; e < n; ++e) {
    const std::size_t i = first + e;
    prefetch_ahead(events, i);
    Event& event = events[i];
    for (size_t k = 0; k < count; ++k) out[e * count + k] = view_of(paths[k] == nullptr ? nullptr : find_in(event, paths[k]));
  }
  return n;
}

// A write the plugin may make: to a value, through a batch not yet emitted.
bool writable(weir_batch* b, weir_value* v) noexcept { return v != nullptr && arena_of(b) != nullptr; }
void value_set_null(weir_batch* b, weir_value* v) noexcept {
  if (writable(b, v)) *V(v) = Value::null();
}
void value_set_bool(weir_batch* b, weir_value* v, int flag) noexcept {
  if (writable(b, v)) *V(v) = Value::boolean(flag != 0);
}
void value_set_int(weir_batch* b, weir_value* v, int64_t i) noexcept {
  if (writable(b, v)) *V(v) = Value::integer(i);
}
void value_set_uint(weir_batch* b, weir_value* v, uint64_t u) noexcept {
  if (writable(b, v)) *V(v) = Value::uinteger(u);
}
void value_set_double(weir_batch* b, weir_value* v, double d) noexcept {
  if (writable(b, v)) *V(v) = Value::floating(d);
}
void value_set_string(weir_batch* b, weir_value* v, weir_str text) noexcept {
  if (writable(b, v)) *V(v) = Value::string(*arena_of(b), S(text));
}
char* batch_alloc(weir_batch* b, size_t size) noexcept {
  Arena* arena = arena_of(b);
  return arena == nullptr ? nullptr : static_cast<char*>(arena->allocate(size == 0 ? 1 : size, 1));
}
char* value_set_string_uninit(weir_batch* b, weir_value* v, size_t size) noexcept {
  if (!writable(b, v)) return nullptr;
  char* bytes = batch_alloc(b, size);
  *V(v) = Value::string_view(std::string_view(bytes, size));
  return bytes;
}
void value_set_object(weir_batch* b, weir_value* v) noexcept {
  if (writable(b, v)) *V(v) = Value::object(*arena_of(b));
}
void value_set_array(weir_batch* b, weir_value* v) noexcept {
  if (writable(b, v)) *V(v) = Value::array(*arena_of(b));
}
void value_copy(weir_batch* b, weir_value* to, const weir_value* from) noexcept {
  if (writable(b, to)) *V(to) = from == nullptr ? Value::null() : deep_copy(*V(from), *arena_of(b));
}
void values_set_strings(weir_batch* b, weir_value* const* targets, const weir_str* texts, size_t count) noexcept {
  if (arena_of(b) == nullptr) return;
  for (size_t i = 0; i < count; ++i) {
    if (targets[i] != nullptr) *V(targets[i]) = Value::string_view(S(texts[i]));
  }
}
weir_value* object_set(weir_batch* b, weir_value* o, weir_str key) noexcept {
  if (!writable(b, o) || !V(o)->is_object()) return nullptr;
  Value& object = *V(o);
  if (Value* found = object.find(S(key))) return W(found);
  Arena& arena = *arena_of(b);
  object.append_member(arena, arena.copy(S(key)), Value::null());
  return W(&object.members().back().value);
}
int object_remove(weir_value* o, weir_str key) noexcept { return V(o)->erase(S(key)) ? 1 : 0; }
weir_value* array_push(weir_batch* b, weir_value* a) noexcept {
  if (!writable(b, a) || !V(a)->is_array()) return nullptr;
  Value& array = *V(a);
  array.push_back(*arena_of(b), Value::null());
  return W(&array.elements().back());
}

// The context's JSON parser, made on first use (its buffers are kept between calls).
JsonParser& parser_of(weir_context* c) noexcept {
  HostContext& context = C(c);
  if (context.parser == nullptr) context.parser = std::make_unique<JsonParser>();
  return *context.parser;
}
int json_parse(weir_context* c, weir_batch* b, weir_str text, weir_value* into, weir_buffer* reason) noexcept {
  if (!writable(b, into)) return WEIR_FAILED;
  auto parsed = parser_of(c).parse(S(text), *arena_of(b));
  if (!parsed.ok()) {
    if (reason != nullptr) B(reason)->append(parsed.error().message());
    return WEIR_FAILED;
  }
  *V(into) = parsed.value();
  return WEIR_OK;
}
void json_write(const weir_value* v, weir_buffer* out) noexcept { write_json(*V(v), *B(out)); }
int json_object_has_key(weir_context* c, weir_str text, weir_str key) noexcept {
  return JsonParser::presence(parser_of(c).object_has_key(S(text), S(key)));
}

void json_objects_have_key(weir_context* c, const weir_str* texts, size_t count, weir_str key, int* results) noexcept {
  std::vector<std::string_view> views(count);
  for (size_t i = 0; i < count; ++i) views[i] = S(texts[i]);
  parser_of(c).objects_have_key(views, S(key), std::span<int>(results, count));
}

void buffer_append(weir_buffer* b, const void* bytes, size_t size) noexcept {
  B(b)->append(std::string_view(static_cast<const char*>(bytes), size));
}
weir_str buffer_view(const weir_buffer* b) noexcept { return S(B(b)->view()); }
weir_buffer* buffer_new() noexcept { return reinterpret_cast<weir_buffer*>(new ByteBuffer()); }
void buffer_clear(weir_buffer* b) noexcept { B(b)->clear(); }
void buffer_free(weir_buffer* b) noexcept { delete B(b); }

weir_str context_name(const weir_context* c) noexcept {
  const HostContext& context = C(c);
  return context.ctx == nullptr ? weir_str{"", 0} : S(context.ctx->name());
}

void emit(weir_context* c, weir_batch* b, uint32_t output) noexcept {
  HostContext& context = C(c);
  HostBatch& h = H(b);
  if (h.batch != nullptr && context.ctx != nullptr) {
    context.ctx->metrics().events_dropped.add(h.removed);
    BatchPtr batch = h.take_compacted();
    if (output < context.output_count) {
      context.ctx->emit(std::move(batch), output);
    } else {
      // A plugin bug, not the events' fault: they are set aside, not lost.
      context.ctx->metrics().errors.add();
      if (context.bad_outputs++ == 0) {
        log::error(context.ctx->name(), "plugin {} emitted to output {}, which this transform does not have; "
                   "its events are dead-lettered", context.plugin_name, output);
      }
      std::string reason = fmt::format("emitted to output {}, which the transform does not have", output);
      for (const Event& e : batch->events()) {
        if (!context.ctx->dead_letter(e, reason)) batch->fail("a dead letter could not be written");
      }
    }
  }
  if (h.heap) delete &h;
}

int reject(weir_context* c, weir_batch* b, size_t i, weir_str reason) noexcept {
  HostContext& context = C(c);
  Event* e = event_of(b, i);
  if (e == nullptr || H(b).is_gone(i) || context.ctx == nullptr) return WEIR_FAILED;
  bool written = context.ctx->dead_letter(*e, S(reason));
  H(b).mark(i, 2);
  if (written) return WEIR_OK;
  // Not set aside after all: whoever sent the batch must send it again (inside process the
  // runtime fails the batch being processed too; this also covers flush and held batches).
  H(b).batch->fail("a dead letter could not be written");
  return WEIR_FAILED;
}

log::Level level_of(int32_t level) noexcept {
  return level <= WEIR_LOG_TRACE ? log::Level::Trace : level >= WEIR_LOG_ERROR ? log::Level::Error : static_cast<log::Level>(level);
}
void log_write(weir_context* c, int32_t level, weir_str message) noexcept {
  const HostContext& context = C(c);
  log::Level lvl = level_of(level);
  if (lvl < log::level()) return;
  log::write(lvl, context.ctx == nullptr ? std::string_view("plugin") : std::string_view(context.ctx->name()), S(message));
}
int log_enabled(const weir_context*, int32_t level) noexcept { return level_of(level) >= log::level() ? 1 : 0; }

weir_metric* metric(weir_context* c, const char* name, const char* help, bool gauge) noexcept {
  HostContext& context = C(c);
  if (context.ctx == nullptr || name == nullptr || *name == '\0') return nullptr;
  // Exported as weir_plugin_<name>: a plugin's names never meet a built-in's.
  return reinterpret_cast<weir_metric*>(
      context.ctx->metrics().named_metric(std::string("plugin_") + name, help == nullptr ? "" : help, gauge));
}
weir_metric* counter(weir_context* c, const char* name, const char* help) noexcept { return metric(c, name, help, false); }
weir_metric* gauge(weir_context* c, const char* name, const char* help) noexcept { return metric(c, name, help, true); }
void counter_add(weir_metric* m, uint64_t n) noexcept {
  if (m != nullptr) M(m)->count.fetch_add(n, std::memory_order_relaxed);
}
void gauge_set(weir_metric* m, double value) noexcept {
  if (m != nullptr) M(m)->value.store(value, std::memory_order_relaxed);
}
void count_errors(weir_context* c, uint64_t n) noexcept {
  if (C(c).ctx != nullptr) C(c).ctx->metrics().errors.add(n);
}
int64_t now(const weir_context* c) noexcept { return C(c).ctx == nullptr ? 0 : C(c).ctx->clock().now(); }
int clock_follows_input(const weir_context* c) noexcept { return C(c).ctx != nullptr && C(c).ctx->clock().follows_input() ? 1 : 0; }
uint64_t random_next(weir_context* c) noexcept { return C(c).ctx == nullptr ? 0 : C(c).ctx->random().next(); }
void uuid_v4(weir_context* c, char* out, size_t count) noexcept {
  HostContext& context = C(c);
  if (!context.uuids.has_value()) context.uuids.emplace(random_next(c));
  for (size_t i = 0; i < count; ++i) context.uuids->next_into(out + 36 * i);
}

weir_host make_table() {
  weir_host h{};
  h.size = sizeof(weir_host);
  h.abi_major = WEIR_ABI_MAJOR;
  h.abi_minor = WEIR_ABI_MINOR;
  h.weir_version = WEIR_VERSION;
  h.error_set = error_set;
  h.option_is_set = option_is_set;
  h.option_has = option_has;
  h.option_string = option_string;
  h.option_int = option_int;
  h.option_double = option_double;
  h.option_bool = option_bool;
  h.option_duration_ns = option_duration_ns;
  h.option_bytes = option_bytes;
  h.option_list_size = option_list_size;
  h.option_list_item = option_list_item;
  h.option_value = option_value;
  h.option_component_name = option_component_name;
  h.option_error = option_error;
  h.batch_size = batch_size;
  h.batch_fields = batch_fields;
  h.batch_metadata = batch_metadata;
  h.batch_remove = batch_remove;
  h.batch_is_removed = batch_is_removed;
  h.batch_new = batch_new;
  h.batch_move_event = batch_move_event;
  h.batch_add_event = batch_add_event;
  h.batch_release = batch_release;
  h.value_kind = value_kind;
  h.value_bool = value_bool;
  h.value_int = value_int;
  h.value_uint = value_uint;
  h.value_number = value_number;
  h.value_string = value_string;
  h.value_size = value_size;
  h.object_key = object_key;
  h.object_value = object_value;
  h.object_find = object_find;
  h.array_element = array_element;
  h.path_new = path_new;
  h.path_free = path_free;
  h.path_find = path_find;
  h.path_ensure = path_ensure;
  h.path_remove = path_remove;
  h.event_get = event_get;
  h.batch_get_n = batch_get_n;
  h.value_set_null = value_set_null;
  h.value_set_bool = value_set_bool;
  h.value_set_int = value_set_int;
  h.value_set_uint = value_set_uint;
  h.value_set_double = value_set_double;
  h.value_set_string = value_set_string;
  h.value_set_string_uninit = value_set_string_uninit;
  h.value_set_object = value_set_object;
  h.value_set_array = value_set_array;
  h.value_copy = value_copy;
  h.batch_alloc = batch_alloc;
  h.values_set_strings = values_set_strings;
  h.object_set = object_set;
  h.object_remove = object_remove;
  h.array_push = array_push;
  h.json_parse = json_parse;
  h.json_write = json_write;
  h.json_object_has_key = json_object_has_key;
  h.json_objects_have_key = json_objects_have_key;
  h.buffer_append = buffer_append;
  h.buffer_view = buffer_view;
  h.buffer_new = buffer_new;
  h.buffer_clear = buffer_clear;
  h.buffer_free = buffer_free;
  h.context_name = context_name;
  h.emit = emit;
  h.reject = reject;
  h.log = log_write;
  h.log_enabled = log_enabled;
  h.counter = counter;
  h.gauge = gauge;
  h.counter_add = counter_add;
  h.gauge_set = gauge_set;
  h.count_errors = count_errors;
  h.now = now;
  h.clock_follows_input = clock_follows_input;
  h.random = random_next;
  h.uuid_v4 = uuid_v4;
  return h;
}

}  // namespace

const weir_host& host_table() {
  static const weir_host table = make_table();
  return table;
}

}  // namespace weir::plugin
