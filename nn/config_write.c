/*
 * config_write.c - config_write of yaml_config.h: writes every field of a
 * struct, defaults included, as a YAML document through libyaml's emitter,
 * in the form config_load reads back to the same struct.
 */
#include "nn/yaml_config.h"

#include <stdio.h>
#include <yaml.h>

#include "nn/config_fields.h"

static int emit(yaml_emitter_t *emitter, yaml_event_t *event, int initialized, DdError *err) {
    if (!initialized || !yaml_emitter_emit(emitter, event))
        return dd_fail(err, "expected to write YAML, found %s",
                       emitter->problem ? emitter->problem : "an event that could not be built");
    return 0;
}

static int emit_scalar(yaml_emitter_t *emitter, const char *text, yaml_scalar_style_t style, DdError *err) {
    yaml_event_t event;
    int ok = yaml_scalar_event_initialize(&event, NULL, NULL, (yaml_char_t *)text, -1, 1, 1, style);
    return emit(emitter, &event, ok, err);
}

static int emit_struct(yaml_emitter_t *emitter, const ConfigSchema *schema, const void *object, DdError *err) {
    yaml_event_t event;
    int ok = yaml_mapping_start_event_initialize(&event, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
    if (emit(emitter, &event, ok, err)) return -1;
    for (int i = 0; i < schema->field_count; i++) {
        const ConfigField *f = &schema->fields[i];
        const char *member = (const char *)object + f->offset;
        if (emit_scalar(emitter, f->key, YAML_ANY_SCALAR_STYLE, err)) return -1;
        if (f->type == CONFIG_STRUCT) {
            if (emit_struct(emitter, f->schema, member, err)) return -1;
        } else if (f->type == CONFIG_LIST) {
            ok = yaml_sequence_start_event_initialize(&event, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
            if (emit(emitter, &event, ok, err)) return -1;
            int count = config_list_count(f, object);
            for (int k = 0; k < count && k < config_list_capacity(f); k++)
                if (emit_struct(emitter, f->schema, member + (size_t)k * f->schema->size, err)) return -1;
            ok = yaml_sequence_end_event_initialize(&event);
            if (emit(emitter, &event, ok, err)) return -1;
        } else {
            char text[512];
            config_format_value(f, member, text, sizeof text);
            int quote = f->type == CONFIG_STRING && config_is_null_text(text);  /* "" or "null" stay strings */
            if (emit_scalar(emitter, text, quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE, err))
                return -1;
        }
    }
    ok = yaml_mapping_end_event_initialize(&event);
    return emit(emitter, &event, ok, err);
}

int config_write(FILE *out, const ConfigSchema *schema, const void *object, DdError *err) {
    if (config_check_schema(schema, err)) return -1;
    yaml_emitter_t emitter;
    if (!yaml_emitter_initialize(&emitter)) return dd_fail(err, "expected memory to write YAML, found none");
    yaml_emitter_set_output_file(&emitter, out);
    yaml_emitter_set_unicode(&emitter, 1);
    yaml_emitter_set_width(&emitter, -1);
    yaml_event_t event;
    int rc = emit(&emitter, &event, yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING), err);
    if (!rc) rc = emit(&emitter, &event, yaml_document_start_event_initialize(&event, NULL, NULL, NULL, 1), err);
    if (!rc) rc = emit_struct(&emitter, schema, object, err);
    if (!rc) rc = emit(&emitter, &event, yaml_document_end_event_initialize(&event, 1), err);
    if (!rc) rc = emit(&emitter, &event, yaml_stream_end_event_initialize(&event), err);
    if (!rc && (!yaml_emitter_flush(&emitter) || ferror(out)))
        rc = dd_fail(err, "expected to write YAML, found a write error");
    yaml_emitter_delete(&emitter);
    return rc;
}
