/*
 * config_fields.c - what the loader and the writer know about a schema's
 * field table: whether a schema fits its struct, the range of each field and
 * the phrase that names it in messages, the text of a value, the defaults
 * (config_set_defaults) and the range and cross-field checks
 * (config_validate); and the places a load remembers, so that a message
 * points at the line that set the value it blames.
 */
#include "nn/config_fields.h"

#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- places: where each loaded value came from ------------------------ */

static int vfail_at(DdError *err, Mark at, const char *format, va_list args) {
    char text[DD_ERROR_MESSAGE_MAX];
    vsnprintf(text, sizeof text, format, args);
    if (!at.file) return dd_fail(err, "%s", text);
    return dd_fail(err, "%s:%d:%d: %s", at.file, at.line, at.column, text);
}

int config_fail_at_mark(DdError *err, Mark at, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vfail_at(err, at, format, args);
    va_end(args);
    return -1;
}

static const Place *find_place(const ConfigPlaces *places, const void *address, const void *what) {
    if (!places) return NULL;
    for (size_t i = 0; i < places->count; i++)
        if (places->items[i].address == address && places->items[i].what == what) return &places->items[i];
    return NULL;
}

int config_remember_place(ConfigPlaces *places, Place place, DdError *err) {
    for (size_t i = 0; i < places->count; i++) {
        if (places->items[i].address == place.address && places->items[i].what == place.what) {
            places->items[i] = place;
            return 0;
        }
    }
    if (places->count == places->capacity) {
        size_t capacity = places->capacity ? 2 * places->capacity : 64;
        Place *items = realloc(places->items, capacity * sizeof *items);
        if (!items) return dd_fail(err, "expected memory for %zu config places, found none", capacity);
        places->items = items;
        places->capacity = capacity;
    }
    places->items[places->count++] = place;
    return 0;
}

/* Drops the places of everything that lies inside [start, start + size). */
void config_forget_places(ConfigPlaces *places, const void *start, size_t size) {
    const char *begin = start, *end = begin + size;
    size_t kept = 0;
    for (size_t i = 0; i < places->count; i++) {
        const char *address = places->items[i].address;
        if (address >= begin && address + places->items[i].size <= end) continue;
        places->items[kept++] = places->items[i];
    }
    places->count = kept;
}

/* The place of a member: where its value was written, or else the start of
 * the innermost mapping that holds it. */
static Mark place_of_member(const ConfigPlaces *places, const void *member, size_t size) {
    const Place *best = NULL;
    const char *begin = member, *end = begin + size;
    for (size_t i = 0; places && i < places->count; i++) {
        const Place *p = &places->items[i];
        const char *p_begin = p->address, *p_end = p_begin + p->size;
        if (!p->is_mapping && p_begin == begin && p->size == size) return p->mark;
        if (p->is_mapping && p_begin <= begin && end <= p_end && (!best || p->size < best->size)) best = p;
    }
    return best ? best->mark : (Mark){0};
}

int config_fail_at(const ConfigPlaces *places, const void *member, size_t member_size,
                   DdError *err, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vfail_at(err, place_of_member(places, member, member_size), format, args);
    va_end(args);
    return -1;
}

/* ---- the schema table: consistency, ranges, phrases, values ---------- */

int config_list_capacity(const ConfigField *f) { return (int)(f->size / f->schema->size); }

int config_list_count(const ConfigField *f, const void *object) {
    return *(const int *)((const char *)object + f->count_offset);
}

void config_set_list_count(const ConfigField *f, void *object, int count) {
    *(int *)((char *)object + f->count_offset) = count;
}

int config_list_most(const ConfigField *f) { return f->max > 0 ? (int)f->max : config_list_capacity(f); }

/* The Y of "found Y" for a list of the wrong length. */
void config_describe_count(int count, char *out, size_t cap) {
    snprintf(out, cap, "%d entr%s", count, count == 1 ? "y" : "ies");
}

int config_enum_index(const ConfigField *f, const char *text, size_t length) {
    for (int i = 0; f->names[i]; i++)
        if (strlen(f->names[i]) == length && memcmp(f->names[i], text, length) == 0) return i;
    return -1;
}

static int enum_count(const ConfigField *f) {
    int n = 0;
    while (f->names[n]) n++;
    return n;
}

/* A schema that contradicts its struct is a programming error; say so
 * before touching memory. */
int config_check_schema(const ConfigSchema *schema, DdError *err) {
    if (schema->field_count > CONFIG_MAX_FIELDS)
        return dd_fail(err, "schema %s: expected at most %d fields, found %d", schema->name,
                       CONFIG_MAX_FIELDS, schema->field_count);
    for (int i = 0; i < schema->field_count; i++) {
        const ConfigField *f = &schema->fields[i];
        size_t want = 0;
        switch (f->type) {
        case CONFIG_INT: case CONFIG_BOOL: case CONFIG_ENUM: want = sizeof(int); break;
        case CONFIG_UINT64: want = sizeof(uint64_t); break;
        case CONFIG_FLOAT: want = sizeof(float); break;
        case CONFIG_DOUBLE: want = sizeof(double); break;
        case CONFIG_STRING: want = f->size > 0 ? f->size : 1; break;
        case CONFIG_STRUCT: want = f->schema ? f->schema->size : 0; break;
        case CONFIG_LIST:
            want = f->schema && f->schema->size && f->size % f->schema->size == 0 &&
                           f->max <= (double)(f->size / f->schema->size) ? f->size : 0;
            break;
        }
        int bad_enum = f->type == CONFIG_ENUM &&
                       (!f->names || !f->names[0] ||
                        (f->fallback_text && config_enum_index(f, f->fallback_text, strlen(f->fallback_text)) < 0));
        if (want != f->size || f->offset + f->size > schema->size || bad_enum || strcmp(f->key, "include") == 0)
            return dd_fail(err, "schema %s: expected a field that fits its member, found '%s'",
                           schema->name, f->key);
        if ((f->type == CONFIG_STRUCT || f->type == CONFIG_LIST) && config_check_schema(f->schema, err)) return -1;
    }
    return 0;
}

static int has_range(const ConfigField *f) { return f->min != 0 || f->max != 0; }

/* A float is compared as the float it is stored as, so that a value read at
 * the edge of its range (1e-12) stays inside it once rounded. */
int config_number_in_range(const ConfigField *f, double value) {
    if (f->type == CONFIG_FLOAT) {
        if (!(fabs(value) <= FLT_MAX)) return 0;
        float v = (float)value;
        return has_range(f) ? v >= (float)f->min && v <= (float)f->max : 1;
    }
    if (has_range(f)) return value >= f->min && value <= f->max;
    return f->type == CONFIG_INT ? value >= INT_MIN && value <= INT_MAX : isfinite(value);
}

/* "integer in [1, 65536]", "one of mlp, swiglu", ... : the X of "expected X". */
void config_expected_phrase(const ConfigField *f, char *out, size_t cap) {
    size_t n = 0;
    switch (f->type) {
    case CONFIG_INT:
    case CONFIG_UINT64:
        n = (size_t)snprintf(out, cap, f->type == CONFIG_INT ? "integer" : "unsigned integer");
        if (has_range(f) && n < cap) snprintf(out + n, cap - n, " in [%.0f, %.0f]", f->min, f->max);
        break;
    case CONFIG_FLOAT:
    case CONFIG_DOUBLE:
        n = (size_t)snprintf(out, cap, "number");
        if (has_range(f) && n < cap) snprintf(out + n, cap - n, " in [%g, %g]", f->min, f->max);
        break;
    case CONFIG_BOOL: snprintf(out, cap, "true or false"); break;
    case CONFIG_STRING:
        if (f->min > 0) snprintf(out, cap, "a string of %.0f to %zu bytes", f->min, f->size - 1);
        else snprintf(out, cap, "a string of at most %zu bytes", f->size - 1);
        break;
    case CONFIG_ENUM:
        n = (size_t)snprintf(out, cap, "one of");
        for (int i = 0; f->names[i] && n < cap; i++)
            n += (size_t)snprintf(out + n, cap - n, "%s %s", i ? "," : "", f->names[i]);
        break;
    case CONFIG_STRUCT: snprintf(out, cap, "a mapping or an include path"); break;
    case CONFIG_LIST:
        if (f->min > 0)
            snprintf(out, cap, "a sequence of %.0f to %d mappings or include paths", f->min, config_list_most(f));
        else snprintf(out, cap, "a sequence of at most %d mappings or include paths", config_list_most(f));
        break;
    }
}

/* Shortest text of a float (or double) that reads back to the same value. */
static void format_real(double value, int is_float, char *out, size_t cap) {
    for (int digits = is_float ? 6 : 15; digits <= (is_float ? 9 : 17); digits++) {
        snprintf(out, cap, "%.*g", digits, value);
        double back = strtod(out, NULL);
        if (is_float ? (float)back == (float)value : back == value) return;
    }
}

/* The value of a scalar member as YAML text (also what messages quote). */
void config_format_value(const ConfigField *f, const void *member, char *out, size_t cap) {
    switch (f->type) {
    case CONFIG_INT: snprintf(out, cap, "%d", *(const int *)member); break;
    case CONFIG_UINT64: snprintf(out, cap, "%" PRIu64, *(const uint64_t *)member); break;
    case CONFIG_FLOAT: format_real(*(const float *)member, 1, out, cap); break;
    case CONFIG_DOUBLE: format_real(*(const double *)member, 0, out, cap); break;
    case CONFIG_BOOL: {
        int v = *(const int *)member;
        if (v == 0 || v == 1) snprintf(out, cap, "%s", v ? "true" : "false");
        else snprintf(out, cap, "%d", v);
        break;
    }
    case CONFIG_ENUM: {
        int v = *(const int *)member;
        if (v >= 0 && v < enum_count(f)) snprintf(out, cap, "%s", f->names[v]);
        else snprintf(out, cap, "%d", v);
        break;
    }
    case CONFIG_STRING:
        snprintf(out, cap, "%.*s", (int)strnlen(member, f->size), (const char *)member);
        break;
    default: snprintf(out, cap, "?"); break;
    }
}

void config_store_number(const ConfigField *f, void *member, double real, long long integer,
                         unsigned long long natural) {
    switch (f->type) {
    case CONFIG_INT: *(int *)member = (int)integer; break;
    case CONFIG_UINT64: *(uint64_t *)member = natural; break;
    case CONFIG_FLOAT: *(float *)member = (float)real; break;
    case CONFIG_DOUBLE: *(double *)member = real; break;
    default: break;
    }
}

static void store_default(const ConfigField *f, void *member) {
    switch (f->type) {
    case CONFIG_INT: case CONFIG_FLOAT: case CONFIG_DOUBLE:
        config_store_number(f, member, f->fallback, (long long)f->fallback, 0);
        break;
    case CONFIG_UINT64: config_store_number(f, member, 0, 0, (unsigned long long)f->fallback); break;
    case CONFIG_BOOL: *(int *)member = f->fallback != 0; break;
    case CONFIG_STRING: snprintf(member, f->size, "%s", f->fallback_text ? f->fallback_text : ""); break;
    case CONFIG_ENUM:
        *(int *)member = f->fallback_text ? config_enum_index(f, f->fallback_text, strlen(f->fallback_text)) : 0;
        break;
    default: break;
    }
}

/* Plain text that YAML reads as null. */
int config_is_null_text(const char *t) {
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

/* ---- defaults and required keys (pass 2 of a load) ----------------------- */

int config_finish_struct(const ConfigSchema *schema, void *object, const ConfigPlaces *places, Mark around,
                         DdError *err) {
    const Place *own = find_place(places, object, schema);
    Mark here = own ? own->mark : around;
    for (int i = 0; i < schema->field_count; i++) {
        const ConfigField *f = &schema->fields[i];
        char *member = (char *)object + f->offset;
        int written = find_place(places, member, f) != NULL;
        if (!written && f->required)
            return config_fail_at_mark(err, here, "expected a value for required key '%s', found none", f->key);
        if (f->type == CONFIG_STRUCT) {
            if (config_finish_struct(f->schema, member, places, here, err)) return -1;
        } else if (f->type == CONFIG_LIST) {
            int count = written ? config_list_count(f, object) : 0;
            for (int k = 0; k < count; k++)
                if (config_finish_struct(f->schema, member + (size_t)k * f->schema->size, places, here, err)) return -1;
        } else if (!written) {
            store_default(f, member);
        }
    }
    return 0;
}

int config_set_defaults(const ConfigSchema *schema, void *object, DdError *err) {
    if (config_check_schema(schema, err)) return -1;
    memset(object, 0, schema->size);
    return config_finish_struct(schema, object, NULL, (Mark){0}, err);
}

/* ---- ranges and cross-field checks (pass 3 of a load) --------------------- */

static int member_in_range(const ConfigField *f, const void *member) {
    switch (f->type) {
    case CONFIG_INT: return config_number_in_range(f, *(const int *)member);
    case CONFIG_UINT64: return config_number_in_range(f, (double)*(const uint64_t *)member);
    case CONFIG_FLOAT: return config_number_in_range(f, *(const float *)member);
    case CONFIG_DOUBLE: return config_number_in_range(f, *(const double *)member);
    case CONFIG_BOOL: return *(const int *)member == 0 || *(const int *)member == 1;
    case CONFIG_ENUM: return *(const int *)member >= 0 && *(const int *)member < enum_count(f);
    case CONFIG_STRING: {
        size_t length = strnlen(member, f->size);
        return length < f->size && length >= (size_t)f->min;
    }
    default: return 1;
    }
}

int config_validate(const ConfigSchema *schema, const void *object, const ConfigPlaces *places, DdError *err) {
    if (config_check_schema(schema, err)) return -1;
    char expected[512], found[FOUND_TEXT_MAX + 8];
    for (int i = 0; i < schema->field_count; i++) {
        const ConfigField *f = &schema->fields[i];
        const char *member = (const char *)object + f->offset;
        if (f->type == CONFIG_STRUCT) {
            if (config_validate(f->schema, member, places, err)) return -1;
        } else if (f->type == CONFIG_LIST) {
            int count = config_list_count(f, object);
            if (count < f->min || count > config_list_most(f)) {
                config_expected_phrase(f, expected, sizeof expected);
                config_describe_count(count, found, sizeof found);
                return config_fail_at(places, member, f->size, err, "expected %s for '%s', found %s", expected,
                                      f->key, found);
            }
            for (int k = 0; k < count; k++)
                if (config_validate(f->schema, member + (size_t)k * f->schema->size, places, err)) return -1;
        } else if (!member_in_range(f, member)) {
            config_expected_phrase(f, expected, sizeof expected);
            config_format_value(f, member, found, sizeof found);
            return config_fail_at(places, member, f->size, err, "expected %s for '%s', found '%s'", expected,
                                  f->key, found);
        }
    }
    return schema->check ? schema->check(object, places, err) : 0;
}
