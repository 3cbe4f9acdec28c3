// weir's C++ SDK for transform plugins: header-only, over the C ABI of weir/plugin.h, so a
// plugin built with it links nothing of weir's and keeps working across weir versions of
// the same ABI major.
//
//   #include <weir/sdk.hpp>
//   struct Upper {
//     static constexpr const char* type = "upper";
//     static constexpr const char* summary = "Upper-cases a field";
//     static inline const std::vector<weir::sdk::Option> options = {
//         {.name = "field", .type = weir::sdk::OptionType::String, .required = true, .doc = "The field."}};
//     explicit Upper(const weir::sdk::Options& o) : field_(o.string("field")) {}
//     void process(weir::sdk::Batch& batch, weir::sdk::Context& ctx) {
//       for (weir::sdk::Event event : batch) { ... event.set(field_, text) ... }
//       ctx.emit(batch);
//     }
//     weir::sdk::Path field_;
//   };
//   WEIR_PLUGIN("upper", "1.0.0", Upper)
//
// A transform type is a class with `type`, `summary`, `options` (validation, defaults and
// `weir list` from this one declaration), a constructor from Options, and process(); it may
// have start(Context&), flush(Context&), `outputs` (named outputs beyond the default), and
// snapshot()/restore() (state kept across restarts). Exceptions never cross into weir: one
// thrown by the constructor is a config error (Options::fail points at the option's
// file:line:col), one thrown by process() is a counted error with every event of the batch
// that was not emitted dead-lettered.
#pragma once

#if __cplusplus < 202002L
#error "weir/sdk.hpp needs C++20 (weir_add_plugin sets it; by hand: -std=c++20)"
#endif

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "weir/plugin.h"

#ifndef WEIR_PLUGIN_SOURCE_DIR
#define WEIR_PLUGIN_SOURCE_DIR nullptr
#endif

namespace weir::sdk {

inline weir_str to_str(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view to_view(weir_str s) { return {s.data == nullptr ? "" : s.data, s.size}; }

enum class Kind : int {
  Null = WEIR_NULL,
  Bool = WEIR_BOOL,
  Int = WEIR_INT,
  Uint = WEIR_UINT,
  Double = WEIR_DOUBLE,
  String = WEIR_STRING,
  Array = WEIR_ARRAY,
  Object = WEIR_OBJECT,
};

enum class OptionType : int {
  String = WEIR_OPTION_STRING,
  Integer = WEIR_OPTION_INTEGER,
  Float = WEIR_OPTION_FLOAT,
  Bool = WEIR_OPTION_BOOL,
  Duration = WEIR_OPTION_DURATION,
  Bytes = WEIR_OPTION_BYTES,
  Enum = WEIR_OPTION_ENUM,
  StringList = WEIR_OPTION_STRING_LIST,
  Map = WEIR_OPTION_MAP,
  Any = WEIR_OPTION_ANY,
};

// One option, declared once.
struct Option {
  const char* name = "";
  OptionType type = OptionType::String;
  const char* default_value = nullptr;  // as written in YAML
  bool required = false;
  std::vector<const char*> choices = {};  // for Enum
  const char* doc = "";
};

// A bad option value, thrown from a constructor: reported at the option's file:line:col.
class OptionError : public std::runtime_error {
 public:
  OptionError(std::string option, const std::string& message) : std::runtime_error(message), option_(std::move(option)) {}
  const std::string& option() const { return option_; }

 private:
  std::string option_;
};

class Options {
 public:
  explicit Options(const weir_options* o) : o_(o), h_(o->host) {}
  std::string_view component_name() const { return to_view(h_->option_component_name(o_)); }
  bool is_set(const char* name) const { return h_->option_is_set(o_, name) != 0; }  // written in the config
  bool has(const char* name) const { return h_->option_has(o_, name) != 0; }        // or defaulted
  std::string string(const char* name) const { return std::string(to_view(h_->option_string(o_, name))); }
  std::int64_t integer(const char* name) const { return h_->option_int(o_, name); }
  double number(const char* name) const { return h_->option_double(o_, name); }
  bool boolean(const char* name) const { return h_->option_bool(o_, name) != 0; }
  std::int64_t duration_ns(const char* name) const { return h_->option_duration_ns(o_, name); }
  std::uint64_t bytes(const char* name) const { return h_->option_bytes(o_, name); }
  std::vector<std::string> strings(const char* name) const {
    std::vector<std::string> out;
    for (std::size_t i = 0, n = h_->option_list_size(o_, name); i < n; ++i) {
      out.emplace_back(to_view(h_->option_list_item(o_, name, i)));
    }
    return out;
  }
  [[noreturn]] void fail(const char* name, const std::string& message) const { throw OptionError(name, message); }
  const weir_host* host() const { return h_; }

 private:
  const weir_options* o_;
  const weir_host* h_;
};

// A view of one value inside an event; false when absent. One that Event::get found holds
// the kind and text it read then without asking weir again: after writing through it, get
// the field again to read the new contents.
class Value {
 public:
  Value() = default;
  Value(const weir_host* h, weir_value* v) : h_(h), v_(v) {}
  Value(const weir_host* h, const weir_view& view)
      : h_(h), v_(view.value), kind_(view.kind), read_(true), string_(view.string) {}
  explicit operator bool() const { return v_ != nullptr; }
  Kind kind() const {
    if (read_ || v_ == nullptr) return static_cast<Kind>(read_ ? kind_ : WEIR_NULL);
    return static_cast<Kind>(h_->value_kind(v_));
  }
  bool is_null() const { return kind() == Kind::Null; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_string() const { return kind() == Kind::String; }
  bool is_object() const { return kind() == Kind::Object; }
  bool is_array() const { return kind() == Kind::Array; }
  bool is_number() const { Kind k = kind(); return k == Kind::Int || k == Kind::Uint || k == Kind::Double; }
  bool as_bool() const { return v_ != nullptr && h_->value_bool(v_) != 0; }
  std::int64_t as_int() const { return v_ == nullptr ? 0 : h_->value_int(v_); }
  std::uint64_t as_uint() const { return v_ == nullptr ? 0 : h_->value_uint(v_); }
  double as_number() const { return v_ == nullptr ? 0.0 : h_->value_number(v_); }
  std::string_view as_string() const {
    if (read_) return kind_ == WEIR_STRING ? to_view(string_) : std::string_view();
    return v_ == nullptr ? std::string_view() : to_view(h_->value_string(v_));
  }
  std::size_t size() const { return v_ == nullptr ? 0 : h_->value_size(v_); }
  // Objects: a member by key, or by position with its key; arrays: an element.
  Value get(std::string_view key) const { return {h_, v_ == nullptr ? nullptr : h_->object_find(v_, to_str(key))}; }
  std::string_view key(std::size_t i) const { return v_ == nullptr ? std::string_view() : to_view(h_->object_key(v_, i)); }
  Value member(std::size_t i) const { return {h_, v_ == nullptr ? nullptr : h_->object_value(v_, i)}; }
  Value operator[](std::size_t i) const { return {h_, v_ == nullptr ? nullptr : h_->array_element(v_, i)}; }
  weir_value* raw() const { return v_; }
  const weir_host* host() const { return h_; }

 private:
  const weir_host* h_ = nullptr;
  weir_value* v_ = nullptr;
  std::int32_t kind_ = WEIR_NULL;  // as read, when read_
  bool read_ = false;
  weir_str string_{nullptr, 0};     // as read, for a string
};

// A dotted field path ("payload.request.id"; "%request_id" for the event's metadata),
// compiled on first use; keep one per component (not thread-safe: it remembers where it
// found its field last).
class Path {
 public:
  Path() = default;
  Path(std::string dotted) : text_(std::move(dotted)) {}  // NOLINT: paths read like strings
  Path(const char* dotted) : text_(dotted) {}             // NOLINT
  Path(const Path& other) : text_(other.text_) {}
  Path& operator=(const Path& other) {
    if (this != &other) {
      reset();
      text_ = other.text_;
    }
    return *this;
  }
  ~Path() { reset(); }
  const std::string& text() const { return text_; }
  bool empty() const { return text_.empty(); }
  bool in_metadata() const { return !text_.empty() && text_.front() == '%'; }
  const weir_path* compiled(const weir_host* h) const {
    if (compiled_ == nullptr && !text_.empty()) {
      host_ = h;
      compiled_ = h->path_new(to_str(text_));
    }
    return compiled_;
  }

 private:
  void reset() {
    if (compiled_ != nullptr) host_->path_free(compiled_);
    compiled_ = nullptr;
  }
  std::string text_;
  mutable const weir_host* host_ = nullptr;
  mutable weir_path* compiled_ = nullptr;
};

class Batch;
class StringWriter;

// One event of a batch, valid until events are added to that batch. Setting a field may
// move the event's other values: read again after writing rather than keeping a Value
// across a set.
class Event {
 public:
  Event(Batch& batch, std::size_t index);
  std::size_t index() const { return index_; }
  Value fields() const { return {h_, fields_ptr()}; }
  Value metadata() const;
  Value get(const Path& path) const {
    const weir_path* p = path.compiled(h_);
    if (p == nullptr) return {};
    return {h_, h_->event_get(b_, index_, p)};
  }
  // A top-level field by name, without a Path (one lookup; a Path is faster when reused).
  Value field(std::string_view key) const { return {h_, h_->object_find(fields_ptr(), to_str(key))}; }
  // The value at `path`, made null when absent: assign through set_* below or the host.
  Value ensure(const Path& path);
  void set(const Path& path, std::string_view text) { h_->value_set_string(b_, slot(path), to_str(text)); }
  void set(const Path& path, const char* text) { set(path, std::string_view(text)); }
  void set(const Path& path, std::int64_t i) { h_->value_set_int(b_, slot(path), i); }
  void set(const Path& path, int i) { set(path, static_cast<std::int64_t>(i)); }
  void set(const Path& path, double d) { h_->value_set_double(b_, slot(path), d); }
  void set(const Path& path, bool b) { h_->value_set_bool(b_, slot(path), b ? 1 : 0); }
  void set(const Path& path, const Value& copy) { h_->value_copy(b_, slot(path), copy.raw()); }
  void set_null(const Path& path) { h_->value_set_null(b_, slot(path)); }
  void set_object(const Path& path) { h_->value_set_object(b_, slot(path)); }  // an empty object
  void set_array(const Path& path) { h_->value_set_array(b_, slot(path)); }    // an empty array
  // Makes the field a string of `size` bytes and returns them to fill (no copy).
  char* set_string(const Path& path, std::size_t size) { return h_->value_set_string_uninit(b_, slot(path), size); }
  // The same for a value already found in this event (it must be there: a false Value
  // has no place to write to; set it by path instead).
  void set(const Value& target, std::string_view text) { h_->value_set_string(b_, present(target), to_str(text)); }
  char* set_string(const Value& target, std::size_t size) { return h_->value_set_string_uninit(b_, present(target), size); }
  bool remove(const Path& path) {
    const weir_path* p = path.compiled(h_);
    return p != nullptr && h_->path_remove(p, root_of(path, false)) != 0;
  }
  // Leaves the event out of what is emitted (counted as discarded).
  void drop() { h_->batch_remove(b_, index_); }
  // Dead-letters the event with the reason (counted) and leaves it out; false when the
  // dead letter could not be written (the source will send the event again).
  bool reject(std::string_view reason);

 private:
  weir_value* slot(const Path& path) {
    const weir_path* p = path.compiled(h_);
    if (p == nullptr) throw std::invalid_argument("an empty field path");
    return h_->path_ensure(b_, p, root_of(path, true));
  }
  // The object a path starts from: the fields, or for "%" paths the metadata (made an
  // object first when writing to an event that has none).
  weir_value* root_of(const Path& path, bool writing) {
    if (!path.in_metadata()) return fields_ptr();
    weir_value* metadata = h_->batch_metadata(b_, index_);
    if (writing && metadata != nullptr && h_->value_kind(metadata) != WEIR_OBJECT) h_->value_set_object(b_, metadata);
    return metadata;
  }
  static weir_value* present(const Value& target) {
    if (!target) throw std::invalid_argument("writing through an absent value: set the field by its path");
    return target.raw();
  }
  weir_value* fields_ptr() const {
    if (fields_ == nullptr) fields_ = h_->batch_fields(b_, index_);
    return fields_;
  }
  const weir_host* h_;
  weir_batch* b_;
  Batch* batch_;
  std::size_t index_;
  mutable weir_value* fields_ = nullptr;  // asked for on first use
};

class Context;

// A batch of events. The one process() gets is weir's: emit it or leave it. One made with
// Context::new_batch() is released when it goes out of scope unemitted.
class Batch {
 public:
  Batch(weir_batch* b, weir_context* c, bool owned) : b_(b), c_(c), h_(b->host), owned_(owned) {}
  Batch(Batch&& other) noexcept : c_(other.c_), h_(other.h_), owned_(other.owned_) {
    other.detach_writer();
    b_ = std::exchange(other.b_, nullptr);
  }
  Batch& operator=(Batch&& other) noexcept {
    if (this != &other) {
      release();
      other.detach_writer();
      b_ = std::exchange(other.b_, nullptr);
      c_ = other.c_;
      h_ = other.h_;
      owned_ = other.owned_;
    }
    return *this;
  }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  ~Batch() { release(); }

  std::size_t size() const { return b_ == nullptr ? 0 : h_->batch_size(b_); }
  bool empty() const { return size() == 0; }
  Event operator[](std::size_t i) { return Event(*this, i); }
  bool is_removed(std::size_t i) const { return h_->batch_is_removed(b_, i) != 0; }
  // A new event (an empty object) at the end.
  Event add_event() {
    h_->batch_add_event(b_);
    return Event(*this, size() - 1);
  }
  // Moves event `index` of `from` here (with the acknowledgements it needs).
  Event move_from(Batch& from, std::size_t index) {
    std::size_t at = h_->batch_move_event(b_, from.b_, index);
    if (at == SIZE_MAX) throw std::out_of_range("move_from: no such event, or one already moved, removed or rejected");
    return Event(*this, at);
  }

  class iterator {
   public:
    iterator(Batch* batch, std::size_t i) : batch_(batch), i_(i) {}
    Event operator*() const { return Event(*batch_, i_); }
    iterator& operator++() { ++i_; return *this; }
    bool operator!=(const iterator& other) const { return i_ != other.i_; }

   private:
    Batch* batch_;
    std::size_t i_;
  };
  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size()}; }

  weir_batch* raw() const { return b_; }
  weir_context* context() const { return c_; }
  const weir_host* host() const { return h_; }
  // The handle, given up (to Context::emit): a StringWriter on the batch flushes first.
  weir_batch* take();

 private:
  friend class StringWriter;
  // A StringWriter on this batch lands what it holds and takes no more: the handle goes.
  void detach_writer();
  void release() {
    detach_writer();
    if (b_ != nullptr && owned_) {
      // An exception is unwinding through the plugin's own batch: its events are set aside
      // with a reason, not dropped unseen.
      if (std::uncaught_exceptions() > 0) {
        for (std::size_t i = 0, n = size(); i < n; ++i) {
          static constexpr char kReason[] = "transform failed: an exception unwound the batch holding the event";
          if (!is_removed(i)) h_->reject(c_, b_, i, weir_str{kReason, sizeof kReason - 1});
        }
      }
      h_->batch_release(b_);
    }
    b_ = nullptr;
  }
  weir_batch* b_;
  weir_context* c_;
  const weir_host* h_;
  bool owned_;
  StringWriter* writer_ = nullptr;
};

// Reads the same fields of every event of a batch, dozens of events per call into weir: for
// the hottest loops, where a call per event shows.
//   FieldReader<2> read(batch, payload_path, request_id_path);
//   for (Event event : batch) { auto [payload, id] = read(event); ... }
// Read values are what the fields held when their chunk was read: write through them, but
// read a field written since with event.get().
template <std::size_t N>
class FieldReader {
 public:
  template <typename... P>
  explicit FieldReader(Batch& batch, const P&... paths) : batch_(batch), paths_{static_cast<const Path&>(paths).compiled(batch.host())...} {
    static_assert(sizeof...(P) == N, "one path per field");
  }
  std::array<Value, N> operator()(const Event& event) { return at(event.index()); }
  std::array<Value, N> at(std::size_t index) {
    if (index - first_ >= got_) {  // also when index < first_ (unsigned)
      first_ = index;
      got_ = batch_.host()->batch_get_n(batch_.raw(), index, kChunk, paths_, N, views_);
      if (got_ == 0) return {};
    }
    return values(&views_[(index - first_) * N], std::make_index_sequence<N>());
  }

 private:
  template <std::size_t... K>
  std::array<Value, N> values(const weir_view* views, std::index_sequence<K...>) const {
    return {Value(batch_.host(), views[K])...};
  }
  static constexpr std::size_t kChunk = 64;
  Batch& batch_;
  const weir_path* paths_[N];
  weir_view views_[kChunk * N];
  std::size_t first_ = 0, got_ = 0;
};

// Sets strings in the batch's memory, dozens per call into weir: the writing half of
// FieldReader. set() hands back the bytes to fill; the value takes them when the writer
// flushes (every few dozen values, when the batch is emitted, and when the writer goes
// out of scope), so read such a value again only after that. One writer per batch.
class StringWriter {
 public:
  explicit StringWriter(Batch& batch) : batch_(&batch) { batch.writer_ = this; }
  StringWriter(const StringWriter&) = delete;
  StringWriter& operator=(const StringWriter&) = delete;
  ~StringWriter() {
    flush();
    if (batch_ != nullptr && batch_->writer_ == this) batch_->writer_ = nullptr;
  }
  char* set(const Value& target, std::size_t size) {
    if (!target) throw std::invalid_argument("StringWriter: writing through an absent value");
    if (size >= left_) refill(size);  // also once detached: left_ is 0 then
    char* out = cursor_;
    cursor_ += size;
    left_ -= size;
    targets_[count_] = target.raw();
    texts_[count_] = {out, size};
    if (++count_ == kChunk) flush();
    return out;
  }
  void flush() {
    if (count_ != 0 && batch_ != nullptr && batch_->raw() != nullptr) {
      batch_->host()->values_set_strings(batch_->raw(), targets_, texts_, count_);
    }
    count_ = 0;
  }
  // The batch is being emitted: what is pending lands now, and nothing after.
  void detach() {
    flush();
    batch_ = nullptr;
    cursor_ = nullptr;
    left_ = 0;
  }

 private:
  void refill(std::size_t size) {
    if (batch_ == nullptr || batch_->raw() == nullptr) throw std::logic_error("StringWriter: its batch was emitted");
    std::size_t block = size > kBlock ? size : kBlock;
    cursor_ = batch_->host()->batch_alloc(batch_->raw(), block);
    if (cursor_ == nullptr) throw std::logic_error("StringWriter: its batch was emitted");
    left_ = block;
  }
  static constexpr std::size_t kChunk = 64, kBlock = 16 * 1024;
  Batch* batch_;
  char* cursor_ = nullptr;
  std::size_t left_ = 0, count_ = 0;
  weir_value* targets_[kChunk];
  weir_str texts_[kChunk];
};

inline void Batch::detach_writer() {
  if (writer_ != nullptr) {
    writer_->detach();
    writer_ = nullptr;
  }
}

inline weir_batch* Batch::take() {
  detach_writer();
  return std::exchange(b_, nullptr);
}

inline Event::Event(Batch& batch, std::size_t index)
    : h_(batch.host()), b_(batch.raw()), batch_(&batch), index_(index) {}
inline Value Event::metadata() const { return {h_, h_->batch_metadata(b_, index_)}; }

inline Value Event::ensure(const Path& path) { return {h_, slot(path)}; }

enum class Level : int { Trace = WEIR_LOG_TRACE, Debug = WEIR_LOG_DEBUG, Info = WEIR_LOG_INFO, Warn = WEIR_LOG_WARN, Error = WEIR_LOG_ERROR };

class Counter {
 public:
  Counter() = default;
  Counter(const weir_host* h, weir_metric* m) : h_(h), m_(m) {}
  void add(std::uint64_t n = 1) const {
    if (m_ != nullptr) h_->counter_add(m_, n);
  }

 private:
  const weir_host* h_ = nullptr;
  weir_metric* m_ = nullptr;
};

class Gauge {
 public:
  Gauge() = default;
  Gauge(const weir_host* h, weir_metric* m) : h_(h), m_(m) {}
  void set(double value) const {
    if (m_ != nullptr) h_->gauge_set(m_, value);
  }

 private:
  const weir_host* h_ = nullptr;
  weir_metric* m_ = nullptr;
};

// The component's view of weir, valid for the length of the call it is passed to.
class Context {
 public:
  explicit Context(weir_context* c) : c_(c), h_(c->host) {}
  std::string_view name() const { return to_view(h_->context_name(c_)); }
  // Hands the batch on (to a named output: its index in `outputs`, plus one).
  void emit(Batch& batch, std::uint32_t output = 0) {
    if (weir_batch* b = batch.take()) h_->emit(c_, b, output);
  }
  void emit(Batch&& batch, std::uint32_t output = 0) { emit(batch, output); }
  Batch new_batch() { return Batch(h_->batch_new(c_), c_, true); }

  void log(Level level, std::string_view message) const { h_->log(c_, static_cast<int>(level), to_str(message)); }
  bool log_enabled(Level level) const { return h_->log_enabled(c_, static_cast<int>(level)) != 0; }
  void debug(std::string_view m) const { log(Level::Debug, m); }
  void info(std::string_view m) const { log(Level::Info, m); }
  void warn(std::string_view m) const { log(Level::Warn, m); }
  void error(std::string_view m) const { log(Level::Error, m); }

  // weir_plugin_<name> under this component's labels.
  Counter counter(const char* name, const char* help) { return {h_, h_->counter(c_, name, help)}; }
  Gauge gauge(const char* name, const char* help) { return {h_, h_->gauge(c_, name, help)}; }
  void count_errors(std::uint64_t n = 1) { h_->count_errors(c_, n); }

  // The pipeline's time (epoch ns) and this component's random numbers: never the wall
  // clock or std::random_device, so a replay gives the same output.
  std::int64_t now() const { return h_->now(c_); }
  bool clock_follows_input() const { return h_->clock_follows_input(c_) != 0; }
  std::uint64_t random() { return h_->random(c_); }
  // `count` random UUIDv4s (36 characters each, one after the other at `out`) from a
  // generator seeded once from random(); ask for many at once where you can.
  void uuid_v4(char* out, std::size_t count = 1) { h_->uuid_v4(c_, out, count); }

  // JSON text into `into` (a value of `batch`'s); false with the reason in `error`.
  bool parse_json(Batch& batch, std::string_view text, Value into, std::string* error = nullptr);
  std::string to_json(Value value) const {
    weir_buffer* buffer = h_->buffer_new();
    h_->json_write(value.raw(), buffer);
    std::string out(to_view(h_->buffer_view(buffer)));
    h_->buffer_free(buffer);
    return out;
  }

  // 1: `text` is a JSON object with `key` at its top level; 0: an object without it;
  // -1: not a JSON object. Builds no values.
  int json_object_has_key(std::string_view text, std::string_view key) {
    return h_->json_object_has_key(c_, to_str(text), to_str(key));
  }
  // The same for many texts in one call into weir: results[i] answers for texts[i] (the
  // parser reads them all in one pass: far cheaper per text for small ones).
  void json_objects_have_key(std::span<const std::string_view> texts, std::string_view key, std::span<int> results) {
    if (results.size() < texts.size()) throw std::invalid_argument("json_objects_have_key: fewer results than texts");
    std::vector<weir_str> raw(texts.size());
    for (std::size_t i = 0; i < texts.size(); ++i) raw[i] = to_str(texts[i]);
    h_->json_objects_have_key(c_, raw.data(), raw.size(), to_str(key), results.data());
  }

  weir_context* raw() const { return c_; }

 private:
  weir_context* c_;
  const weir_host* h_;
};

inline bool Event::reject(std::string_view reason) {
  return h_->reject(batch_->context(), b_, index_, to_str(reason)) == WEIR_OK;
}

inline bool Context::parse_json(Batch& batch, std::string_view text, Value into, std::string* error) {
  weir_buffer* reason = error == nullptr ? nullptr : h_->buffer_new();
  bool ok = h_->json_parse(c_, batch.raw(), to_str(text), into.raw(), reason) == WEIR_OK;
  if (reason != nullptr) {
    *error = std::string(to_view(h_->buffer_view(reason)));
    h_->buffer_free(reason);
  }
  return ok;
}

// ---- What turns a class into a transform type (the boundary exceptions stop at). ----
namespace detail {

inline void fail(const weir_host* h, weir_error* e, std::string_view message) { h->error_set(e, to_str(message)); }

// Runs `body`, turning any exception into WEIR_FAILED with its message.
template <typename Body>
int guarded(const weir_host* h, weir_error* e, Body&& body) {
  try {
    body();
    return WEIR_OK;
  } catch (const std::exception& ex) {
    fail(h, e, ex.what());
  } catch (...) {
    fail(h, e, "an exception that is not a std::exception");
  }
  return WEIR_FAILED;
}

template <typename T>
struct Trampolines {
  static void* create(const weir_options* o, weir_error* e) {
    try {
      return new T(Options(o));
    } catch (const OptionError& ex) {
      o->host->option_error(o, ex.option().c_str(), to_str(ex.what()), e);
    } catch (const std::exception& ex) {
      fail(o->host, e, ex.what());
    } catch (...) {
      fail(o->host, e, "an exception that is not a std::exception");
    }
    return nullptr;
  }
  static void destroy(void* instance) { delete static_cast<T*>(instance); }
  static int start(void* instance, weir_context* c, weir_error* e) {
    return guarded(c->host, e, [&] {
      if constexpr (requires(T& t, Context& ctx) { t.start(ctx); }) {
        Context ctx(c);
        static_cast<T*>(instance)->start(ctx);
      }
    });
  }
  static int process(void* instance, weir_context* c, weir_batch* b, weir_error* e) {
    return guarded(c->host, e, [&] {
      Context ctx(c);
      Batch batch(b, c, false);
      static_cast<T*>(instance)->process(batch, ctx);
    });
  }
  static int flush(void* instance, weir_context* c, weir_error* e) {
    return guarded(c->host, e, [&] {
      if constexpr (requires(T& t, Context& ctx) { t.flush(ctx); }) {
        Context ctx(c);
        static_cast<T*>(instance)->flush(ctx);
      }
    });
  }
  static int snapshot(void* instance, weir_context* c, weir_buffer* out, weir_error* e) {
    return guarded(c->host, e, [&] {
      if constexpr (requires(const T& t) { { t.snapshot() } -> std::convertible_to<std::string>; }) {
        std::string state = static_cast<const T*>(instance)->snapshot();
        c->host->buffer_append(out, state.data(), state.size());
      }
    });
  }
  static int restore(void* instance, weir_context* c, weir_str state, weir_error* e) {
    return guarded(c->host, e, [&] {
      if constexpr (requires(T& t, std::string_view s) { t.restore(s); }) static_cast<T*>(instance)->restore(to_view(state));
    });
  }
};

template <typename T>
constexpr bool keeps_state = requires(const T& t, T& m, std::string_view s) {
  { t.snapshot() } -> std::convertible_to<std::string>;
  m.restore(s);
};

template <typename T>
const weir_transform_type& transform_type() {
  constexpr bool has_snapshot = requires(T& t) { t.snapshot(); };
  constexpr bool has_restore = requires(T& t, std::string_view s) { t.restore(s); };
  static_assert(has_snapshot == has_restore && (!has_snapshot || keeps_state<T>),
                "state needs both `std::string snapshot() const` and `void restore(std::string_view)`");
  static const std::vector<std::vector<const char*>> choices = [] {
    std::vector<std::vector<const char*>> out;
    for (const Option& o : T::options) {
      out.emplace_back(o.choices.begin(), o.choices.end());
      out.back().push_back(nullptr);
    }
    return out;
  }();
  static const std::vector<weir_option> options = [] {
    std::vector<weir_option> out;
    for (std::size_t i = 0; i < T::options.size(); ++i) {
      const Option& o = T::options[i];
      out.push_back(weir_option{o.name, static_cast<std::int32_t>(o.type), o.required ? 1 : 0, o.default_value,
                                o.choices.empty() ? nullptr : choices[i].data(), o.doc});
    }
    return out;
  }();
  static const std::vector<const char*> outputs = [] {
    std::vector<const char*> out;
    if constexpr (requires { T::outputs; }) out.assign(T::outputs.begin(), T::outputs.end());
    out.push_back(nullptr);
    return out;
  }();
  static const weir_transform_type type = [] {
    weir_transform_type t{};
    t.type = T::type;
    t.summary = T::summary;
    t.options = options.data();
    t.option_count = options.size();
    t.outputs = outputs.size() > 1 ? outputs.data() : nullptr;
    t.keeps_state = keeps_state<T> ? 1 : 0;
    if constexpr (requires { T::runs_off_loop; }) t.off_loop = T::runs_off_loop ? 1 : 0;
    t.create = &Trampolines<T>::create;
    t.destroy = &Trampolines<T>::destroy;
    t.start = &Trampolines<T>::start;
    t.process = &Trampolines<T>::process;
    t.flush = &Trampolines<T>::flush;
    if constexpr (keeps_state<T>) {
      t.snapshot = &Trampolines<T>::snapshot;
      t.restore = &Trampolines<T>::restore;
    }
    return t;
  }();
  return type;
}

}  // namespace detail

// The descriptor of a plugin made of the transform types T...
template <typename... T>
const weir_plugin* describe(const char* name, const char* version, const char* source_dir) {
  static const std::vector<weir_transform_type> types = {detail::transform_type<T>()...};
  static const weir_plugin plugin = [&] {
    weir_plugin p{};
    p.abi_major = WEIR_ABI_MAJOR;
    p.abi_minor = WEIR_ABI_MINOR;
    p.size = sizeof(weir_plugin);
    p.name = name;
    p.version = version;
    p.source_dir = source_dir;
    p.transform_type_size = sizeof(weir_transform_type);
    p.option_size = sizeof(weir_option);
    p.transforms = types.data();
    p.transform_count = types.size();
    return p;
  }();
  return &plugin;
}

}  // namespace weir::sdk

// Exports the entry symbol of a plugin holding the transform types given.
#define WEIR_PLUGIN(name, version, ...)                                                 \
  extern "C" WEIR_PLUGIN_EXPORT const weir_plugin* weir_plugin_entry(void) noexcept {   \
    return ::weir::sdk::describe<__VA_ARGS__>(name, version, WEIR_PLUGIN_SOURCE_DIR); \
  }
