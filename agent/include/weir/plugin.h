/* weir's plugin ABI: the contract between weir and a transform built outside it.
 *
 * Plain C, so a plugin can be written in C, C++ (weir/sdk.hpp wraps this header) or
 * anything that speaks C, and built with another compiler or standard library than weir's.
 * A plugin never links against weir: everything it does goes through the host's function
 * table (weir_host), reached from every handle it is given. So it has no registry, arena
 * pool or log level of its own to disagree with weir's.
 *
 * A plugin is a shared library exporting one symbol, weir_plugin_entry, which returns the
 * plugin's descriptor. weir loads it with dlopen(RTLD_NOW | RTLD_LOCAL) and refuses it,
 * before anything starts, when the ABI major differs, when it needs a newer minor than this
 * weir has, or when a transform type is malformed or already taken.
 *
 * What weir promises across versions (docs/plugins.md):
 * - Within one ABI major, a plugin built against any minor <= weir's loads and behaves the
 *   same. Structs only grow at their end; each carries or is described by its size, and a
 *   field past the size the other side was built with reads as zero / NULL (the host copies
 *   the plugin's structs into zeroed ones of its own size; the plugin checks host->size
 *   before calling a function added after the minor it needs).
 * - The first seven fields of weir_plugin and the first four of weir_host are the same in
 *   every major, so a mismatch is always reported, never misread.
 * - Enum values are never renumbered; new ones are added at the end.
 *
 * Threading: weir calls a plugin on its event loop thread only; calls never overlap.
 * Lifetimes: a weir_value* stays valid until its event's object or array is changed
 * (adding a member may move the others), an event is added to its batch (the events may
 * move), or its batch is emitted or released; strings (weir_str) returned by the host
 * live as long as the value they came from; strings the plugin passes in are copied by
 * the host unless said otherwise. A batch handle is spent once emitted: writes through it
 * are ignored (for a batch from batch_new the handle is freed: do not use it at all).
 * Host functions do not throw; on out-of-memory weir terminates, as it does anywhere.
 * Callbacks must not throw either (the C++ SDK catches everything at its boundary).
 * weir_str and weir_view are frozen for the whole major (they are passed by value and in
 * arrays, so they cannot grow).
 */
#ifndef WEIR_PLUGIN_H
#define WEIR_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

/* A major changes when an existing struct member or function changes meaning; a minor when
 * something is added at the end of a struct. (A plugin build may define WEIR_ABI_MAJOR to
 * test how a weir of another major refuses it.) */
#ifndef WEIR_ABI_MAJOR
#define WEIR_ABI_MAJOR 1
#endif
#define WEIR_ABI_MINOR 2

#define WEIR_PLUGIN_ENTRY_SYMBOL "weir_plugin_entry"

#if defined(__GNUC__) || defined(__clang__)
#define WEIR_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define WEIR_PLUGIN_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes with a length; not NUL-terminated. */
typedef struct weir_str {
  const char* data;
  size_t size;
} weir_str;

typedef struct weir_host weir_host;
typedef struct weir_value weir_value; /* one value inside an event */

/* A value found and read in one call (event_get): its handle, its kind, and its text when
 * it is a string (other contents through the value_* functions). */
typedef struct weir_view {
  weir_value* value; /* NULL when absent */
  int32_t kind;      /* weir_kind; WEIR_NULL when absent */
  int32_t reserved;
  weir_str string;   /* WEIR_STRING: the text */
} weir_view;

/* Handles the host hands out. Each starts with the host's function table; the rest is the
 * host's own. */
typedef struct weir_context {
  const weir_host* host;
} weir_context; /* one component instance: emit, reject, log, metrics, clock, random */
typedef struct weir_batch {
  const weir_host* host;
} weir_batch; /* a batch of events */
typedef struct weir_options {
  const weir_host* host;
} weir_options; /* a component's validated options, defaults applied */
typedef struct weir_error weir_error;   /* where a callback that fails puts its reason */
typedef struct weir_buffer weir_buffer; /* bytes the host collects (a state snapshot) */
typedef struct weir_path weir_path;     /* a dotted field path, compiled once */
typedef struct weir_metric weir_metric; /* a counter or gauge of one component */

typedef enum weir_kind {
  WEIR_NULL = 0,
  WEIR_BOOL = 1,
  WEIR_INT = 2,  /* int64 */
  WEIR_UINT = 3, /* uint64 above INT64_MAX */
  WEIR_DOUBLE = 4,
  WEIR_STRING = 5,
  WEIR_ARRAY = 6,
  WEIR_OBJECT = 7
} weir_kind;

typedef enum weir_option_type {
  WEIR_OPTION_STRING = 0,
  WEIR_OPTION_INTEGER = 1,
  WEIR_OPTION_FLOAT = 2,
  WEIR_OPTION_BOOL = 3,
  WEIR_OPTION_DURATION = 4, /* "250ms", "1s", "5m", or seconds */
  WEIR_OPTION_BYTES = 5,    /* "64KiB", "10MiB", or bytes */
  WEIR_OPTION_ENUM = 6,     /* one of `choices` */
  WEIR_OPTION_STRING_LIST = 7,
  WEIR_OPTION_MAP = 8, /* free-form mapping: read with option_value */
  WEIR_OPTION_ANY = 9
} weir_option_type;

typedef enum weir_log_level {
  WEIR_LOG_TRACE = 0,
  WEIR_LOG_DEBUG = 1,
  WEIR_LOG_INFO = 2,
  WEIR_LOG_WARN = 3,
  WEIR_LOG_ERROR = 4
} weir_log_level;

/* Callbacks return WEIR_OK, or WEIR_FAILED after putting the reason into their weir_error. */
enum { WEIR_OK = 0, WEIR_FAILED = 1 };

/* One option of a transform type: validated by weir, defaults applied, listed by
 * `weir list`, all from this one declaration. */
typedef struct weir_option {
  const char* name;          /* dotted for nested keys: "key.env" */
  int32_t type;              /* weir_option_type */
  int32_t required;          /* nonzero: the config must set it */
  const char* default_value; /* as written in YAML; NULL or "" for none */
  const char* const* choices; /* WEIR_OPTION_ENUM: NULL-terminated */
  const char* doc;
} weir_option;

/* One transform type. Every callback but process and destroy may be NULL. */
typedef struct weir_transform_type {
  const char* type;    /* the `type:` users write; must not clash with any other */
  const char* summary; /* one line for `weir list` */
  const weir_option* options;
  size_t option_count;
  /* Outputs beyond the default one (referenced as `name.output`), NULL-terminated; NULL
   * for the default output only. Output 0 is the default, then these in order. */
  const char* const* outputs;
  /* Nonzero: weir asks for snapshot() between batches and hands the last one saved to
   * restore() before the first batch; sources are acknowledged only once a snapshot
   * covering their events is on disk (as for built-in stateful transforms). */
  int32_t keeps_state;
  /* (1.2; before, reserved and 0) Nonzero: process() may be called off the loop, on the
   * thread that decoded the batch, never at the same time as another call into this
   * instance. Set it only when process() touches nothing but the batch, the instance and the
   * host's functions for them, and the instance has no callbacks of its own. Ignored for a
   * type that keeps state. */
  int32_t off_loop;

  /* Makes an instance from validated options; NULL with the reason in `error` (use
   * host->option_error to point at the option's file:line:col). Called by `weir validate`
   * too, so it must not start anything. */
  void* (*create)(const weir_options* options, weir_error* error);
  void (*destroy)(void* instance);
  int (*start)(void* instance, weir_context* context, weir_error* error);
  /* Takes a batch. The batch stays the host's: emit it (to any output, once) or leave it,
   * and after process returns the host releases what was not emitted. Events removed or
   * rejected are left out of what is emitted. WEIR_FAILED: weir counts an error and
   * dead-letters every event of the batch still in it (not emitted, removed or rejected),
   * with the reason; weir keeps running. Events neither emitted nor dead-lettered are
   * counted as discarded. */
  int (*process)(void* instance, weir_context* context, weir_batch* batch, weir_error* error);
  /* Every input has ended: emit whatever is held back. */
  int (*flush)(void* instance, weir_context* context, weir_error* error);
  /* The state, appended to `out` with host->buffer_append. */
  int (*snapshot)(void* instance, weir_context* context, weir_buffer* out, weir_error* error);
  /* After start() and before the first batch (and on reload, with the state of the
   * instance this one replaces). */
  int (*restore)(void* instance, weir_context* context, weir_str snapshot, weir_error* error);
} weir_transform_type;

typedef struct weir_plugin {
  /* These seven are the same in every ABI major. */
  uint32_t abi_major;  /* WEIR_ABI_MAJOR */
  uint32_t abi_minor;  /* WEIR_ABI_MINOR */
  uint32_t size;       /* sizeof(weir_plugin) */
  uint32_t reserved0;
  const char* name;    /* the plugin's name, for messages and `weir list` */
  const char* version; /* the plugin's own version */
  const char* source_dir; /* where it was built from (for the rebuild hint), or NULL */

  uint32_t transform_type_size; /* sizeof(weir_transform_type) */
  uint32_t option_size;         /* sizeof(weir_option) */
  const weir_transform_type* transforms; /* an array, transform_type_size apart */
  size_t transform_count;
  /* Called once after the checks pass, before any type is registered; WEIR_FAILED refuses
   * the plugin with the reason. May be NULL. */
  int (*init)(const weir_host* host, weir_error* error);
} weir_plugin;

/* The entry symbol every plugin exports. It must only return the descriptor (which must
 * live as long as the library): weir checks the ABI before calling anything else. */
typedef const weir_plugin* (*weir_plugin_entry_fn)(void);

struct weir_host {
  /* These four are the same in every ABI major. */
  uint32_t size; /* sizeof(weir_host) as weir was built: functions past it are absent */
  uint32_t abi_major;
  uint32_t abi_minor;
  uint32_t reserved0;
  const char* weir_version;

  /* Failures. */
  void (*error_set)(weir_error* error, weir_str message);

  /* Options (in create). Names are the option names as declared; a name the type does not
   * declare reads as unset. Strings live as long as the options. */
  int (*option_is_set)(const weir_options* options, const char* name); /* by the config, not a default */
  int (*option_has)(const weir_options* options, const char* name);    /* set or defaulted */
  weir_str (*option_string)(const weir_options* options, const char* name);
  int64_t (*option_int)(const weir_options* options, const char* name);
  double (*option_double)(const weir_options* options, const char* name);
  int (*option_bool)(const weir_options* options, const char* name);
  int64_t (*option_duration_ns)(const weir_options* options, const char* name);
  uint64_t (*option_bytes)(const weir_options* options, const char* name);
  size_t (*option_list_size)(const weir_options* options, const char* name);
  weir_str (*option_list_item)(const weir_options* options, const char* name, size_t index);
  const weir_value* (*option_value)(const weir_options* options, const char* name); /* NULL when absent */
  weir_str (*option_component_name)(const weir_options* options);
  /* Sets `error` to `message` at the option's place in the config (file:line:col). */
  void (*option_error)(const weir_options* options, const char* name, weir_str message, weir_error* error);

  /* Batches. Index i runs over [0, batch_size). */
  size_t (*batch_size)(const weir_batch* batch);
  weir_value* (*batch_fields)(weir_batch* batch, size_t index);   /* an object */
  weir_value* (*batch_metadata)(weir_batch* batch, size_t index); /* an object, or null */
  /* Leaves the event out of what the batch emits (on purpose: counted as discarded). */
  void (*batch_remove)(weir_batch* batch, size_t index);
  int (*batch_is_removed)(const weir_batch* batch, size_t index);
  /* A new empty batch; the plugin's until it emits or releases it. */
  weir_batch* (*batch_new)(weir_context* context);
  /* Adds event `index` of `from` to `to` and returns its index in `to` (SIZE_MAX for no
   * such event, one already gone, or to == from); `to` takes on `from`'s
   * acknowledgements, so the sources hear of the event only once `to` is delivered.
   * Acknowledgements are per batch: a batch holding events keeps every source batch they
   * came from unacknowledged until it is emitted or released, so emit held batches
   * regularly. `from`'s copy is removed. */
  size_t (*batch_move_event)(weir_batch* to, weir_batch* from, size_t index);
  weir_value* (*batch_add_event)(weir_batch* batch); /* a new event: its fields, an empty object */
  /* A batch from batch_new that will not be emitted: its events go nowhere (counted as
   * discarded). */
  void (*batch_release)(weir_batch* batch);

  /* Reading values. Asking a value of the wrong kind returns 0 / an empty string. */
  int32_t (*value_kind)(const weir_value* value); /* weir_kind */
  int (*value_bool)(const weir_value* value);
  int64_t (*value_int)(const weir_value* value);
  uint64_t (*value_uint)(const weir_value* value);
  double (*value_number)(const weir_value* value); /* any number as double */
  weir_str (*value_string)(const weir_value* value);
  size_t (*value_size)(const weir_value* value); /* members, elements, or string bytes */
  weir_str (*object_key)(const weir_value* object, size_t index);
  weir_value* (*object_value)(weir_value* object, size_t index);
  weir_value* (*object_find)(weir_value* object, weir_str key);
  weir_value* (*array_element)(weir_value* array, size_t index);

  /* Paths ("payload.request.id"; "%request_id" names the event's metadata, as in Vector's
   * VRL). A path remembers where it found its field last time, so keep one per component
   * and look it up in every event. path_find, path_ensure and path_remove work from the
   * root given; event_get and batch_get_n start at the event's fields or, for "%" paths,
   * at its metadata. */
  weir_path* (*path_new)(weir_str dotted);
  void (*path_free)(weir_path* path);
  weir_value* (*path_find)(const weir_path* path, weir_value* root); /* NULL when absent */
  /* The value at the path, made (null) when absent, with objects made on the way. */
  weir_value* (*path_ensure)(weir_batch* batch, const weir_path* path, weir_value* root);
  int (*path_remove)(const weir_path* path, weir_value* root); /* nonzero when there was one */
  /* The field at `path` of event `index`, found and read in one call (the fast way to read
   * a field of every event). */
  weir_view (*event_get)(weir_batch* batch, size_t index, const weir_path* path);
  /* `count` fields of each of up to `events` events from `first` on, in one call:
   * out[e * count + k] is field k of event first + e. For the hottest loops, where a call
   * per event shows. Returns how many events it read (fewer at the batch's end). */
  size_t (*batch_get_n)(weir_batch* batch, size_t first, size_t events, const weir_path* const* paths, size_t count,
                        weir_view* out);

  /* Writing values: the batch holds the memory new values live in. */
  void (*value_set_null)(weir_batch* batch, weir_value* value);
  void (*value_set_bool)(weir_batch* batch, weir_value* value, int b);
  void (*value_set_int)(weir_batch* batch, weir_value* value, int64_t i);
  void (*value_set_uint)(weir_batch* batch, weir_value* value, uint64_t u);
  void (*value_set_double)(weir_batch* batch, weir_value* value, double d);
  void (*value_set_string)(weir_batch* batch, weir_value* value, weir_str text); /* copied */
  /* Makes the value a string of `size` bytes and returns them for the plugin to fill. */
  char* (*value_set_string_uninit)(weir_batch* batch, weir_value* value, size_t size);
  void (*value_set_object)(weir_batch* batch, weir_value* value); /* an empty object */
  void (*value_set_array)(weir_batch* batch, weir_value* value);  /* an empty array */
  void (*value_copy)(weir_batch* batch, weir_value* to, const weir_value* from); /* deep */
  /* `size` bytes that live as long as the batch's events, for strings set without a copy. */
  char* (*batch_alloc)(weir_batch* batch, size_t size);
  /* Makes each targets[i] the string texts[i], without copying: the texts must be bytes of
   * this batch (from batch_alloc, or strings of its events). One call for many values, for
   * the hottest loops. */
  void (*values_set_strings)(weir_batch* batch, weir_value* const* targets, const weir_str* texts, size_t count);
  weir_value* (*object_set)(weir_batch* batch, weir_value* object, weir_str key); /* the member, made null if new */
  int (*object_remove)(weir_value* object, weir_str key);
  weir_value* (*array_push)(weir_batch* batch, weir_value* array); /* a new null element */

  /* JSON text: parse into `into` (WEIR_FAILED on bad text, with the reason appended to
   * `reason` unless it is NULL); write compact JSON. */
  int (*json_parse)(weir_context* context, weir_batch* batch, weir_str text, weir_value* into, weir_buffer* reason);
  void (*json_write)(const weir_value* value, weir_buffer* out);
  /* Whether JSON text is an object with `key` at its top level (1), without it (0), or not
   * an object at all (-1), found without building values: for edits that splice text
   * instead of decoding and re-encoding it. */
  int (*json_object_has_key)(weir_context* context, weir_str text, weir_str key);

  void (*buffer_append)(weir_buffer* buffer, const void* bytes, size_t size);
  weir_str (*buffer_view)(const weir_buffer* buffer);
  weir_buffer* (*buffer_new)(void);
  void (*buffer_clear)(weir_buffer* buffer);
  void (*buffer_free)(weir_buffer* buffer);

  /* The component. */
  weir_str (*context_name)(const weir_context* context); /* its config key */
  /* Hands the batch to output `output`; the handle is spent. */
  void (*emit)(weir_context* context, weir_batch* batch, uint32_t output);
  /* Dead-letters the event with the reason (counted) and removes it from the batch.
   * WEIR_FAILED when the dead letter could not be written (full disk): the source is told
   * and sends the batch again. */
  int (*reject)(weir_context* context, weir_batch* batch, size_t index, weir_str reason);
  void (*log)(weir_context* context, int32_t level, weir_str message);
  int (*log_enabled)(const weir_context* context, int32_t level);
  /* Metrics under the component's labels, exported as weir_plugin_<name>; the same name
   * twice gives the same metric. Names: [a-z][a-z0-9_]*; NULL for a bad name. */
  weir_metric* (*counter)(weir_context* context, const char* name, const char* help);
  weir_metric* (*gauge)(weir_context* context, const char* name, const char* help);
  void (*counter_add)(weir_metric* counter, uint64_t n);
  void (*gauge_set)(weir_metric* gauge, double value);
  void (*count_errors)(weir_context* context, uint64_t n); /* weir_component_errors_total */
  /* The pipeline's clock (epoch ns): the input's time under `weir replay` and `weir test`,
   * so use it, never the wall clock, for anything that ends up in events. */
  int64_t (*now)(const weir_context* context);
  int (*clock_follows_input)(const weir_context* context);
  /* This component's random numbers: seeded from --seed under replay and test. */
  uint64_t (*random)(weir_context* context);
  /* `count` random (version 4) UUIDs, 36 lower-case characters each, written one after
   * the other at `out`, from a generator seeded once from random(): the same sequence
   * whether asked for one at a time or many. */
  void (*uuid_v4)(weir_context* context, char* out, size_t count);

  /* Added in ABI 1.1. */
  /* json_object_has_key for `count` texts in one call: results[i] is its answer for
   * texts[i]. The parser reads them all in one pass, which costs a fraction of a call per
   * text for small ones. */
  void (*json_objects_have_key)(weir_context* context, const weir_str* texts, size_t count, weir_str key, int* results);
};

#ifdef __cplusplus
}
#endif

#endif /* WEIR_PLUGIN_H */
