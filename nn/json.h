/*
 * json.h - a small JSON reader for untrusted text, and the writing helpers
 * the safetensors writer and the config.json exporter share.
 *
 * Reading is a pull cursor over a buffer of known length (the text need not
 * be NUL-terminated): the caller walks the document in the order it expects
 * it (json_object_begin, json_object_next, json_read_string, ...) and skips
 * what it does not need with json_skip_value. Nothing is allocated; strings
 * are decoded into caller buffers of a stated capacity.
 *
 * Bounds: every read is checked against the end of the buffer; nesting is
 * limited to JSON_MAX_DEPTH; a string longer than its buffer, a number out
 * of range, invalid UTF-8, an unpaired surrogate, a NUL character (\u0000)
 * or a control character are errors. The grammar is RFC 8259 exactly: no
 * trailing commas, no comments, no leading zeros, no NaN.
 *
 * Errors read "SOURCE: byte N: expected X, found Y", where SOURCE is the
 * name given to json_cursor_init and N the 0-based offset in the text.
 */
#ifndef DD_NN_JSON_H
#define DD_NN_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nn/error.h"

enum { JSON_MAX_DEPTH = 64 };

typedef enum JsonType {
    JSON_END = 0,   /* nothing but whitespace is left, or a byte no value starts with */
    JSON_OBJECT,
    JSON_ARRAY,
    JSON_STRING,
    JSON_NUMBER,
    JSON_BOOL,
    JSON_NULL,
} JsonType;

typedef struct JsonCursor {
    const char *text;
    size_t length;
    size_t position;                 /* next byte to read */
    const char *source;              /* names the text in messages */
    int depth;                       /* open objects and arrays */
    uint8_t first[JSON_MAX_DEPTH];   /* per open container: no member read yet */
} JsonCursor;

void json_cursor_init(JsonCursor *cursor, const char *text, size_t length, const char *source);

/* The type of the value at the cursor (after whitespace); does not move. */
JsonType json_peek(JsonCursor *cursor);

/* '{': enters an object. Then json_object_next returns 1 with the next key
 * decoded into key[capacity] (the cursor then stands at its value, which
 * the caller reads or skips), or 0 after consuming the closing '}'. */
int json_object_begin(JsonCursor *cursor, DdError *err);
int json_object_next(JsonCursor *cursor, char *key, size_t capacity, DdError *err);

/* '[': enters an array. json_array_next returns 1 when an element follows
 * (read it), 0 after consuming the closing ']'. */
int json_array_begin(JsonCursor *cursor, DdError *err);
int json_array_next(JsonCursor *cursor, DdError *err);

/* A string decoded as UTF-8 into out[capacity] (NUL-terminated); *length
 * (may be NULL) receives its byte length. */
int json_read_string(JsonCursor *cursor, char *out, size_t capacity, size_t *length, DdError *err);
/* A non-negative integer written without fraction or exponent, <= maximum. */
int json_read_uint64(JsonCursor *cursor, uint64_t maximum, uint64_t *value, DdError *err);
/* Any number. */
int json_read_double(JsonCursor *cursor, double *value, DdError *err);
/* true or false. */
int json_read_bool(JsonCursor *cursor, int *value, DdError *err);
/* Skips one value of any type (nested ones included, within the depth limit). */
int json_skip_value(JsonCursor *cursor, DdError *err);
/* Succeeds when only whitespace is left. */
int json_expect_end(JsonCursor *cursor, DdError *err);

/* ---- writing ------------------------------------------------------------------ */

/* Writes text as a JSON string literal (quotes, backslashes and control
 * characters escaped; other bytes as they are). */
void json_write_string(FILE *out, const char *text);

#endif
