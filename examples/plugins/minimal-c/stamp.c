/* A weir transform in plain C, on the ABI alone (weir/plugin.h): `type: stamp` sets a
 * field to a fixed text on every event and counts the events it stamped. */
#include <stdlib.h>
#include <string.h>

#include <weir/plugin.h>

typedef struct stamp {
  const weir_host* host; /* every handle carries it; kept for destroy, which gets none */
  weir_path* field;
  char* value;
  size_t value_size;
  weir_metric* stamped;
} stamp;

static void* stamp_create(const weir_options* options, weir_error* error) {
  const weir_host* host = options->host;
  weir_str field = host->option_string(options, "field");
  weir_str value = host->option_string(options, "value");
  if (memchr(field.data, ' ', field.size) != NULL) {
    static const char message[] = "field must be a dotted path without spaces";
    host->option_error(options, "field", (weir_str){message, sizeof message - 1}, error);
    return NULL;
  }
  stamp* self = calloc(1, sizeof *self);
  self->host = host;
  self->field = host->path_new(field);
  self->value = malloc(value.size + 1);
  memcpy(self->value, value.data, value.size);
  self->value_size = value.size;
  return self;
}

static void stamp_destroy(void* instance) {
  stamp* self = instance;
  self->host->path_free(self->field);
  free(self->value);
  free(self);
}

static int stamp_process(void* instance, weir_context* context, weir_batch* batch, weir_error* error) {
  (void)error;
  stamp* self = instance;
  const weir_host* host = context->host;
  if (self->stamped == NULL) self->stamped = host->counter(context, "stamped_events_total", "Events the stamp transform stamped.");
  size_t n = host->batch_size(batch);
  for (size_t i = 0; i < n; ++i) {
    weir_value* slot = host->path_ensure(batch, self->field, host->batch_fields(batch, i));
    host->value_set_string(batch, slot, (weir_str){self->value, self->value_size});
  }
  host->counter_add(self->stamped, n);
  host->emit(context, batch, 0);
  return WEIR_OK;
}

static const weir_option stamp_options[] = {
    {"field", WEIR_OPTION_STRING, 1, NULL, NULL, "The field to set (a dotted path)."},
    {"value", WEIR_OPTION_STRING, 0, "weir", NULL, "The text it is set to."},
};

static const weir_transform_type stamp_types[] = {{
    .type = "stamp",
    .summary = "Sets a field to a fixed text (an example plugin in C)",
    .options = stamp_options,
    .option_count = sizeof stamp_options / sizeof stamp_options[0],
    .create = stamp_create,
    .destroy = stamp_destroy,
    .process = stamp_process,
}};

#ifndef WEIR_PLUGIN_SOURCE_DIR
#define WEIR_PLUGIN_SOURCE_DIR NULL
#endif

WEIR_PLUGIN_EXPORT const weir_plugin* weir_plugin_entry(void) {
  static const weir_plugin plugin = {
      .abi_major = WEIR_ABI_MAJOR,
      .abi_minor = WEIR_ABI_MINOR,
      .size = sizeof(weir_plugin),
      .name = "minimal-c",
      .version = "1.0.0",
      .source_dir = WEIR_PLUGIN_SOURCE_DIR,
      .transform_type_size = sizeof(weir_transform_type),
      .option_size = sizeof(weir_option),
      .transforms = stamp_types,
      .transform_count = sizeof stamp_types / sizeof stamp_types[0],
  };
  return &plugin;
}
