/*
 * yaml_config.h - loads YAML files into plain C structs through a declarative
 * schema, and writes such structs back out as YAML.
 *
 * A schema is a table of fields per struct: the key, the type, where the
 * value goes (offsetof), whether it is required or else its default, and its
 * range. One table says everything about a file format; the loader, the
 * defaults, the range checks and the writer all read the same table.
 *
 *     static const ConfigField head_fields[] = {
 *         {CONFIG_MEMBER(HeadConfig, layers), .type = CONFIG_INT, .min = 1, .max = 16, .fallback = 3},
 *         ...
 *     };
 *     const ConfigSchema head_schema = CONFIG_SCHEMA("head", HeadConfig, head_fields, NULL);
 *
 * What a file may contain:
 *   - a mapping whose keys are the schema's keys; unknown keys, a key written
 *     twice, and values of the wrong type or out of range are errors;
 *   - for a struct-valued field, a mapping, or a string: a path relative to
 *     the file being read, loaded as that struct (`model: ../models/vits16.yaml`);
 *   - in any mapping, `include: PATH`: that file's mapping supplies the values
 *     the keys written beside it do not. A mapping with an include, or a path
 *     string, replaces what an outer include gave the struct; a mapping
 *     without one is merged key by key into it;
 *   - a list field is a sequence of mappings or paths, and replaces the list.
 *
 * Every error is one line, `FILE:LINE:COLUMN: expected X, found Y`, where
 * FILE is the path as given (includes: joined to the including file's
 * folder), LINE and COLUMN are 1-based and point at the offending value, key,
 * or, for a missing key, the start of the mapping. Only a problem with the
 * whole top-level file (missing, a folder, over the size limit) has no line:
 * `FILE: expected a readable file, found No such file or directory`; for an
 * included file the place of its include is given instead.
 *
 * Limits, so that no input hangs or exhausts the loader: the sizes below;
 * libyaml's quadratic corners (deep nesting, many anchors) are cut off
 * before they are reached.
 */
#ifndef DD_NN_YAML_CONFIG_H
#define DD_NN_YAML_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "nn/error.h"

enum {
    CONFIG_MAX_INCLUDE_DEPTH = 16,       /* files open at once through includes */
    CONFIG_MAX_FILE_BYTES = 1 << 20,     /* larger files are refused unread */
    CONFIG_MAX_NESTING = 64,             /* mappings and sequences inside each other */
    CONFIG_MAX_ANCHORS = 256,            /* &anchors in one file */
    CONFIG_MAX_FIELDS = 64,              /* fields of one schema */
};

typedef enum ConfigType {
    CONFIG_INT,      /* int; plain decimal integer */
    CONFIG_UINT64,   /* uint64_t; plain non-negative decimal integer */
    CONFIG_FLOAT,    /* float; plain decimal number (integers allowed) */
    CONFIG_DOUBLE,   /* double; likewise */
    CONFIG_BOOL,     /* int 0/1; true or false */
    CONFIG_STRING,   /* char[N], NUL-terminated, at most N-1 bytes */
    CONFIG_ENUM,     /* int: the index of the name in `names` */
    CONFIG_STRUCT,   /* a nested struct described by `schema` */
    CONFIG_LIST,     /* a fixed array of `schema` structs plus an int count */
} ConfigType;

typedef struct ConfigSchema ConfigSchema;

/* Where each loaded value came from, for the duration of a load (opaque). */
typedef struct ConfigPlaces ConfigPlaces;

typedef struct ConfigField {
    const char *key;
    ConfigType type;
    size_t offset;               /* of the member in the struct */
    size_t size;                 /* sizeof the member (checked against the type) */
    int required;                /* 1: the key must be written (or included) */
    /* Range, inclusive. Numbers: the value (both 0: the type's whole range);
     * strings: min is the least length in bytes (the most is the buffer's);
     * lists: the entry count (max 0: the array's capacity). */
    double min, max;
    double fallback;             /* default of a number or bool */
    const char *fallback_text;   /* default of a string or enum */
    const char *const *names;    /* enum: NULL-terminated; value i is names[i] */
    const ConfigSchema *schema;  /* struct and list entries */
    size_t count_offset;         /* list: offset of its int entry count */
} ConfigField;

struct ConfigSchema {
    const char *name;            /* what the struct is, for messages: "model" */
    size_t size;                 /* sizeof the struct */
    const ConfigField *fields;
    int field_count;
    /* Cross-field checks, run after ranges (and after the nested structs'
     * own checks); fail through config_fail_at. NULL if none. */
    int (*check)(const void *object, const ConfigPlaces *places, DdError *err);
};

/* The key, offset and size of a field, from the member's name. */
#define CONFIG_MEMBER(Struct, member)                                            \
    .key = #member, .offset = offsetof(Struct, member),                          \
    .size = sizeof(((Struct *)0)->member)

#define CONFIG_SCHEMA(label, Struct, field_table, check_fn)                      \
    {.name = (label), .size = sizeof(Struct), .fields = (field_table),           \
     .field_count = (int)(sizeof(field_table) / sizeof((field_table)[0])),       \
     .check = (check_fn)}

/* Loads the YAML file at path into object (a struct of schema->size bytes):
 * applies the file and its includes, fills defaults, checks ranges and runs
 * the schemas' checks. On failure object holds no meaningful value. */
int config_load(const ConfigSchema *schema, void *object, const char *path, DdError *err);

/* Same, from text in memory; path names it in messages, and includes are
 * relative to its folder. */
int config_load_text(const ConfigSchema *schema, void *object, const char *text,
                     size_t length, const char *path, DdError *err);

/* Fills object with the schema's defaults; fails if a field is required. */
int config_set_defaults(const ConfigSchema *schema, void *object, DdError *err);

/* Checks ranges and runs the checks of an in-memory struct (one that was
 * built in code, say). places is NULL outside a load. */
int config_validate(const ConfigSchema *schema, const void *object,
                    const ConfigPlaces *places, DdError *err);

/* For a schema's check: formats "expected X, found Y" into err, prefixed with
 * the place the member (member_size bytes at member) was loaded from, or the
 * start of the innermost mapping holding it, or nothing. Returns -1. */
int config_fail_at(const ConfigPlaces *places, const void *member, size_t member_size,
                   DdError *err, const char *format, ...) __attribute__((format(printf, 5, 6)));
#define CONFIG_FAIL_AT(places, member_pointer, err, ...)                         \
    config_fail_at((places), (member_pointer), sizeof *(member_pointer), (err), __VA_ARGS__)

/* Of the candidate schemas, the index of the one a file is written for: the
 * first whose keys cover every top-level key of the file (following a file
 * that holds only an include). 0 when none does or the file cannot be read,
 * so that loading it with candidates[0] reports the problem. */
int config_pick_schema(const ConfigSchema *const *candidates, int count, const char *path);

/* Writes every field of object (defaults included) as a YAML document that
 * config_load reads back to the same struct. */
int config_write(FILE *out, const ConfigSchema *schema, const void *object, DdError *err);

#endif
