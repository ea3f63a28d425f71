/*
 * json.c - the bounded JSON pull reader and the string writer of json.h.
 */
#include "nn/json.h"

#include <stdlib.h>
#include <string.h>

void json_cursor_init(JsonCursor *cursor, const char *text, size_t length, const char *source) {
    memset(cursor, 0, sizeof *cursor);
    cursor->text = text;
    cursor->length = length;
    cursor->source = source ? source : "JSON text";
}

/* ---- positions and messages --------------------------------------------------- */

static int at_end(const JsonCursor *c) { return c->position >= c->length; }
static unsigned char current(const JsonCursor *c) { return (unsigned char)c->text[c->position]; }

static void skip_whitespace(JsonCursor *c) {
    while (!at_end(c)) {
        unsigned char b = current(c);
        if (b != ' ' && b != '\t' && b != '\n' && b != '\r') break;
        c->position++;
    }
}

/* What stands at the cursor, for "found ...": a quoted character or a byte. */
static const char *describe_current(const JsonCursor *c, char text[24]) {
    if (at_end(c)) return "the end of the text";
    unsigned char b = current(c);
    if (b >= 0x20 && b < 0x7f) snprintf(text, 24, "'%c'", b);
    else snprintf(text, 24, "byte 0x%02x", b);
    return text;
}

/* "SOURCE: byte N: expected <expected>, found <what stands at the cursor>". */
static int fail_expected(const JsonCursor *c, const char *expected, DdError *err) {
    char found[24];
    return dd_fail(err, "%s: byte %zu: expected %s, found %s", c->source, c->position, expected,
                   describe_current(c, found));
}

static int expect_byte(JsonCursor *c, char byte, const char *expected, DdError *err) {
    skip_whitespace(c);
    if (at_end(c) || current(c) != (unsigned char)byte) return fail_expected(c, expected, err);
    c->position++;
    return 0;
}

JsonType json_peek(JsonCursor *cursor) {
    skip_whitespace(cursor);
    if (at_end(cursor)) return JSON_END;
    unsigned char b = current(cursor);
    if (b == '{') return JSON_OBJECT;
    if (b == '[') return JSON_ARRAY;
    if (b == '"') return JSON_STRING;
    if (b == '-' || (b >= '0' && b <= '9')) return JSON_NUMBER;
    if (b == 't' || b == 'f') return JSON_BOOL;
    if (b == 'n') return JSON_NULL;
    return JSON_END;
}

/* ---- strings ------------------------------------------------------------------ */

/* Appends n bytes to out[capacity] (out may be NULL: validation only). */
static int append(const JsonCursor *c, char *out, size_t capacity, size_t *used, const char *bytes,
                  size_t n, DdError *err) {
    if (out) {
        if (*used + n + 1 > capacity)
            return dd_fail(err, "%s: byte %zu: expected a string of at most %zu bytes, found a longer one",
                           c->source, c->position, capacity ? capacity - 1 : 0);
        memcpy(out + *used, bytes, n);
    }
    *used += n;
    return 0;
}

static int hex_value(unsigned char b) {
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

/* The four hex digits after "\u" (the cursor stands on the first one). */
static int read_hex4(JsonCursor *c, unsigned *value, DdError *err) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = at_end(c) ? -1 : hex_value(current(c));
        if (h < 0) return fail_expected(c, "four hex digits after \\u", err);
        v = v * 16 + (unsigned)h;
        c->position++;
    }
    *value = v;
    return 0;
}

static size_t encode_utf8(unsigned cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* An escape sequence; the cursor stands after the backslash. */
static int read_escape(JsonCursor *c, char *out, size_t capacity, size_t *used, DdError *err) {
    static const char plain_from[] = "\"\\/bfnrt", plain_to[] = "\"\\/\b\f\n\r\t";
    if (at_end(c)) return fail_expected(c, "an escape character", err);
    const char *plain = memchr(plain_from, current(c), sizeof plain_from - 1);
    if (plain) {
        c->position++;
        return append(c, out, capacity, used, &plain_to[plain - plain_from], 1, err);
    }
    if (current(c) != 'u') return fail_expected(c, "one of \"\\/bfnrtu after a backslash", err);
    c->position++;
    unsigned cp = 0;
    if (read_hex4(c, &cp, err) != 0) return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff) {
        c->position -= 4;
        return fail_expected(c, "a high surrogate before a low one", err);
    }
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (c->length - c->position < 2 || c->text[c->position] != '\\' || c->text[c->position + 1] != 'u')
            return fail_expected(c, "a \\u low surrogate after a high surrogate", err);
        c->position += 2;
        unsigned low = 0;
        if (read_hex4(c, &low, err) != 0) return -1;
        if (low < 0xdc00 || low > 0xdfff) {
            c->position -= 4;
            return fail_expected(c, "a low surrogate (DC00-DFFF)", err);
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
    }
    if (cp == 0) {
        c->position -= 6;
        return fail_expected(c, "no NUL character in a string", err);
    }
    char bytes[4];
    size_t n = encode_utf8(cp, bytes);
    return append(c, out, capacity, used, bytes, n, err);
}

/* One UTF-8 encoded character of two to four bytes; the cursor stands on
 * its lead byte. Overlong forms, surrogates and code points past U+10FFFF
 * are rejected. */
static int read_utf8_sequence(JsonCursor *c, char *out, size_t capacity, size_t *used, DdError *err) {
    unsigned char lead = current(c);
    size_t n;
    unsigned char low = 0x80, high = 0xbf;   /* range of the second byte */
    if (lead >= 0xc2 && lead <= 0xdf) n = 2;
    else if (lead >= 0xe0 && lead <= 0xef) {
        n = 3;
        if (lead == 0xe0) low = 0xa0;
        if (lead == 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        n = 4;
        if (lead == 0xf0) low = 0x90;
        if (lead == 0xf4) high = 0x8f;
    } else {
        return fail_expected(c, "valid UTF-8", err);
    }
    if (c->length - c->position < n) return fail_expected(c, "a complete UTF-8 character", err);
    for (size_t i = 1; i < n; i++) {
        unsigned char b = (unsigned char)c->text[c->position + i];
        unsigned char lo = i == 1 ? low : 0x80, hi = i == 1 ? high : 0xbf;
        if (b < lo || b > hi) {
            c->position += i;
            return fail_expected(c, "a UTF-8 continuation byte", err);
        }
    }
    int status = append(c, out, capacity, used, c->text + c->position, n, err);
    c->position += n;
    return status;
}

/* A string literal into out[capacity], or only validated when out is NULL. */
static int read_string(JsonCursor *c, char *out, size_t capacity, size_t *length, DdError *err) {
    if (expect_byte(c, '"', "a string", err) != 0) return -1;
    size_t used = 0;
    for (;;) {
        if (at_end(c)) return fail_expected(c, "the closing quote of the string", err);
        unsigned char b = current(c);
        int status;
        if (b == '"') {
            c->position++;
            break;
        } else if (b < 0x20) {
            return fail_expected(c, "no control character in a string", err);
        } else if (b == '\\') {
            c->position++;
            status = read_escape(c, out, capacity, &used, err);
        } else if (b >= 0x80) {
            status = read_utf8_sequence(c, out, capacity, &used, err);
        } else {
            status = append(c, out, capacity, &used, (const char *)&c->text[c->position], 1, err);
            c->position++;
        }
        if (status != 0) return -1;
    }
    if (out) out[used] = '\0';
    if (length) *length = used;
    return 0;
}

int json_read_string(JsonCursor *cursor, char *out, size_t capacity, size_t *length, DdError *err) {
    if (!out || capacity == 0) return dd_fail(err, "%s: no room to decode a string into", cursor->source);
    return read_string(cursor, out, capacity, length, err);
}

/* ---- numbers and literals -------------------------------------------------------- */

/* The extent of a number per the JSON grammar; the cursor moves past it. */
typedef struct NumberText {
    size_t start, end;
    int negative, integral;   /* integral: no fraction and no exponent */
} NumberText;

static int digits(JsonCursor *c) {
    size_t start = c->position;
    while (!at_end(c) && current(c) >= '0' && current(c) <= '9') c->position++;
    return c->position > start;
}

static int scan_number(JsonCursor *c, NumberText *number, DdError *err) {
    skip_whitespace(c);
    number->start = c->position;
    number->negative = !at_end(c) && current(c) == '-';
    number->integral = 1;
    if (number->negative) c->position++;
    if (!at_end(c) && current(c) == '0') {
        c->position++;
        if (!at_end(c) && current(c) >= '0' && current(c) <= '9')
            return fail_expected(c, "no leading zero in a number", err);
    } else if (!digits(c)) {
        return fail_expected(c, "a number", err);
    }
    if (!at_end(c) && current(c) == '.') {
        c->position++;
        number->integral = 0;
        if (!digits(c)) return fail_expected(c, "digits after the decimal point", err);
    }
    if (!at_end(c) && (current(c) == 'e' || current(c) == 'E')) {
        c->position++;
        number->integral = 0;
        if (!at_end(c) && (current(c) == '+' || current(c) == '-')) c->position++;
        if (!digits(c)) return fail_expected(c, "digits in the exponent", err);
    }
    number->end = c->position;
    return 0;
}

int json_read_uint64(JsonCursor *cursor, uint64_t maximum, uint64_t *value, DdError *err) {
    NumberText number;
    if (scan_number(cursor, &number, err) != 0) return -1;
    const char *text = cursor->text + number.start;
    int width = (int)(number.end - number.start > 40 ? 40 : number.end - number.start);
    if (number.negative || !number.integral) {
        cursor->position = number.start;
        return dd_fail(err, "%s: byte %zu: expected a non-negative integer, found %.*s", cursor->source,
                       number.start, width, text);
    }
    uint64_t v = 0;
    for (size_t i = number.start; i < number.end; i++) {
        unsigned d = (unsigned)(cursor->text[i] - '0');
        if (v > (maximum - d) / 10) {
            cursor->position = number.start;
            return dd_fail(err, "%s: byte %zu: expected an integer of at most %llu, found %.*s%s",
                           cursor->source, number.start, (unsigned long long)maximum, width, text,
                           number.end - number.start > 40 ? "..." : "");
        }
        v = v * 10 + d;
    }
    *value = v;
    return 0;
}

int json_read_double(JsonCursor *cursor, double *value, DdError *err) {
    NumberText number;
    if (scan_number(cursor, &number, err) != 0) return -1;
    char text[64];
    size_t n = number.end - number.start;
    if (n >= sizeof text) {
        cursor->position = number.start;
        return dd_fail(err, "%s: byte %zu: expected a number of at most %zu characters, found %zu",
                       cursor->source, number.start, sizeof text - 1, n);
    }
    memcpy(text, cursor->text + number.start, n);
    text[n] = '\0';
    *value = strtod(text, NULL);
    return 0;
}

/* Consumes the literal word (true, false, null) at the cursor. */
static int read_literal(JsonCursor *c, const char *word, DdError *err) {
    size_t n = strlen(word);
    skip_whitespace(c);
    if (c->length - c->position < n || memcmp(c->text + c->position, word, n) != 0) {
        char expected[16];
        snprintf(expected, sizeof expected, "'%s'", word);
        return fail_expected(c, expected, err);
    }
    c->position += n;
    return 0;
}

int json_read_bool(JsonCursor *cursor, int *value, DdError *err) {
    skip_whitespace(cursor);
    if (!at_end(cursor) && current(cursor) == 't') {
        *value = 1;
        return read_literal(cursor, "true", err);
    }
    if (!at_end(cursor) && current(cursor) == 'f') {
        *value = 0;
        return read_literal(cursor, "false", err);
    }
    return fail_expected(cursor, "true or false", err);
}

/* ---- containers ----------------------------------------------------------------- */

static int enter(JsonCursor *c, char open, const char *expected, DdError *err) {
    if (expect_byte(c, open, expected, err) != 0) return -1;
    if (c->depth >= JSON_MAX_DEPTH) {
        c->position--;
        return dd_fail(err, "%s: byte %zu: expected at most %d nested objects and arrays, found more",
                       c->source, c->position, JSON_MAX_DEPTH);
    }
    c->first[c->depth++] = 1;
    return 0;
}

/* Before the next member or element of the innermost container: 0 when the
 * closing byte was consumed, 1 when a member follows (after its comma). */
static int next_in_container(JsonCursor *c, char close, const char *expected, DdError *err) {
    if (c->depth <= 0) return dd_fail(err, "%s: byte %zu: not inside an object or array", c->source, c->position);
    skip_whitespace(c);
    if (!at_end(c) && current(c) == (unsigned char)close) {
        c->position++;
        c->depth--;
        return 0;
    }
    if (!c->first[c->depth - 1]) {
        if (at_end(c) || current(c) != ',') {
            char what[48];
            snprintf(what, sizeof what, "',' or '%c'", close);
            return fail_expected(c, what, err);
        }
        c->position++;
        skip_whitespace(c);
        if (at_end(c) || current(c) == (unsigned char)close) return fail_expected(c, expected, err);
    }
    c->first[c->depth - 1] = 0;
    return 1;
}

int json_object_begin(JsonCursor *cursor, DdError *err) {
    return enter(cursor, '{', "an object", err);
}

int json_object_next(JsonCursor *cursor, char *key, size_t capacity, DdError *err) {
    int more = next_in_container(cursor, '}', "a key", err);
    if (more <= 0) return more;
    if (read_string(cursor, key, capacity, NULL, err) != 0) return -1;
    if (expect_byte(cursor, ':', "':' after the key", err) != 0) return -1;
    return 1;
}

int json_array_begin(JsonCursor *cursor, DdError *err) {
    return enter(cursor, '[', "an array", err);
}

int json_array_next(JsonCursor *cursor, DdError *err) {
    return next_in_container(cursor, ']', "a value", err);
}

int json_skip_value(JsonCursor *cursor, DdError *err) {
    int more;
    switch (json_peek(cursor)) {
    case JSON_OBJECT:
        if (json_object_begin(cursor, err) != 0) return -1;
        while ((more = json_object_next(cursor, NULL, 0, err)) == 1)
            if (json_skip_value(cursor, err) != 0) return -1;
        return more;
    case JSON_ARRAY:
        if (json_array_begin(cursor, err) != 0) return -1;
        while ((more = json_array_next(cursor, err)) == 1)
            if (json_skip_value(cursor, err) != 0) return -1;
        return more;
    case JSON_STRING:
        return read_string(cursor, NULL, 0, NULL, err);
    case JSON_NUMBER: {
        NumberText number;
        return scan_number(cursor, &number, err);
    }
    case JSON_BOOL: {
        int ignored;
        return json_read_bool(cursor, &ignored, err);
    }
    case JSON_NULL:
        return read_literal(cursor, "null", err);
    default:
        return fail_expected(cursor, "a value", err);
    }
}

int json_expect_end(JsonCursor *cursor, DdError *err) {
    skip_whitespace(cursor);
    return at_end(cursor) ? 0 : fail_expected(cursor, "the end of the text", err);
}

/* ---- writing ------------------------------------------------------------------- */

void json_write_string(FILE *out, const char *text) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", out);
        else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
        else fputc(*p, out);
    }
    fputc('"', out);
}
