/*
 * config_fields.h - what the three files of the YAML config code share: the
 * loader (yaml_config.c), the writer (config_write.c) and the field-table
 * helpers they both stand on (config_fields.c). Not an API: callers use
 * nn/yaml_config.h.
 */
#ifndef DD_NN_CONFIG_FIELDS_H
#define DD_NN_CONFIG_FIELDS_H

#include <stddef.h>

#include "nn/error.h"
#include "nn/yaml_config.h"

enum { FOUND_TEXT_MAX = 48 };  /* a found value is quoted up to this many bytes */

/* ---- places: where each loaded value came from ------------------------ */

/* A position in a file, 1-based; file NULL means "nowhere known". */
typedef struct Mark {
    const char *file;
    int line, column;
} Mark;

typedef struct Place {
    const void *address;   /* of the member (value) or the struct (mapping) */
    size_t size;
    const void *what;      /* its ConfigField, or for a mapping its ConfigSchema */
    int is_mapping;
    Mark mark;
} Place;

struct ConfigPlaces {
    Place *items;
    size_t count, capacity;
};

/* Formats "FILE:LINE:COLUMN: message" into err (no prefix if at.file is
 * NULL). Returns -1. */
int config_fail_at_mark(DdError *err, Mark at, const char *format, ...) __attribute__((format(printf, 3, 4)));
/* Records where the value at place.address came from, replacing an earlier
 * place of the same member. */
int config_remember_place(ConfigPlaces *places, Place place, DdError *err);
/* Drops the places of everything inside [start, start + size). */
void config_forget_places(ConfigPlaces *places, const void *start, size_t size);

/* ---- the field table ------------------------------------------------------ */

/* Fails for a schema that contradicts its struct (a programming error). */
int config_check_schema(const ConfigSchema *schema, DdError *err);

/* List fields: the array's capacity, the entry count stored beside it, and
 * the most entries allowed. */
int config_list_capacity(const ConfigField *f);
int config_list_count(const ConfigField *f, const void *object);
void config_set_list_count(const ConfigField *f, void *object, int count);
int config_list_most(const ConfigField *f);

/* The index of a name in an enum field's names, or -1. */
int config_enum_index(const ConfigField *f, const char *text, size_t length);
/* Whether a number lies in a field's range (as stored, for a float). */
int config_number_in_range(const ConfigField *f, double value);
/* Stores a parsed number into a numeric member of the field's type. */
void config_store_number(const ConfigField *f, void *member, double real, long long integer,
                         unsigned long long natural);

/* Text for messages and the writer: the X of "expected X" for a field, the Y
 * of "found Y" for a list's length, and a scalar member's value as YAML. */
void config_expected_phrase(const ConfigField *f, char *out, size_t cap);
void config_describe_count(int count, char *out, size_t cap);
void config_format_value(const ConfigField *f, const void *member, char *out, size_t cap);
/* Whether plain YAML text reads as null. */
int config_is_null_text(const char *t);

/* Pass 2 of a load: gives every member that no file wrote its default, or
 * fails for a required one at the start of the mapping lacking it (around,
 * if the struct itself has no place). */
int config_finish_struct(const ConfigSchema *schema, void *object, const ConfigPlaces *places, Mark around,
                         DdError *err);

#endif
