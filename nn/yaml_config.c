/*
 * yaml_config.c - the schema-driven YAML loader and writer of yaml_config.h.
 *
 * A load runs three passes over one destination struct:
 *   1. apply: walk the YAML nodes of the file, and of every file it includes,
 *      store each value that is written, and remember where it came from (a
 *      place: file, line, column, keyed by the member's address);
 *   2. finish: give every member that no file wrote its default, or fail for
 *      a required one, pointing at the start of the mapping that lacks it;
 *   3. validate: check ranges again and run the schemas' cross-field checks,
 *      which find the places of the members they blame.
 * The places, and the copies of the file names they point to, live until the
 * load returns. libyaml parses each file into a yaml_document_t; the walk
 * descends only where the schema does, so it is bounded by the schema and
 * the 1 MiB file limit, whatever anchors and aliases the file holds.
 */
#include "nn/yaml_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

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

static int fail_at(DdError *err, Mark at, const char *format, ...) __attribute__((format(printf, 3, 4)));

static int vfail_at(DdError *err, Mark at, const char *format, va_list args) {
    char text[DD_ERROR_MESSAGE_MAX];
    vsnprintf(text, sizeof text, format, args);
    if (!at.file) return dd_fail(err, "%s", text);
    return dd_fail(err, "%s:%d:%d: %s", at.file, at.line, at.column, text);
}

static int fail_at(DdError *err, Mark at, const char *format, ...) {
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

static int remember_place(ConfigPlaces *places, Place place, DdError *err) {
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
static void forget_places(ConfigPlaces *places, const void *start, size_t size) {
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

static int list_capacity(const ConfigField *f) { return (int)(f->size / f->schema->size); }

static int list_count(const ConfigField *f, const void *object) {
    return *(const int *)((const char *)object + f->count_offset);
}

static void set_list_count(const ConfigField *f, void *object, int count) {
    *(int *)((char *)object + f->count_offset) = count;
}

static int list_most(const ConfigField *f) { return f->max > 0 ? (int)f->max : list_capacity(f); }

/* The Y of "found Y" for a list of the wrong length. */
static void describe_count(int count, char *out, size_t cap) {
    snprintf(out, cap, "%d entr%s", count, count == 1 ? "y" : "ies");
}

static int enum_index(const ConfigField *f, const char *text, size_t length) {
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
static int check_schema(const ConfigSchema *schema, DdError *err) {
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
                        (f->fallback_text && enum_index(f, f->fallback_text, strlen(f->fallback_text)) < 0));
        if (want != f->size || f->offset + f->size > schema->size || bad_enum || strcmp(f->key, "include") == 0)
            return dd_fail(err, "schema %s: expected a field that fits its member, found '%s'",
                           schema->name, f->key);
        if ((f->type == CONFIG_STRUCT || f->type == CONFIG_LIST) && check_schema(f->schema, err)) return -1;
    }
    return 0;
}

static int has_range(const ConfigField *f) { return f->min != 0 || f->max != 0; }

/* A float is compared as the float it is stored as, so that a value read at
 * the edge of its range (1e-12) stays inside it once rounded. */
static int number_in_range(const ConfigField *f, double value) {
    if (f->type == CONFIG_FLOAT) {
        if (!(fabs(value) <= FLT_MAX)) return 0;
        float v = (float)value;
        return has_range(f) ? v >= (float)f->min && v <= (float)f->max : 1;
    }
    if (has_range(f)) return value >= f->min && value <= f->max;
    return f->type == CONFIG_INT ? value >= INT_MIN && value <= INT_MAX : isfinite(value);
}

/* "integer in [1, 65536]", "one of mlp, swiglu", ... : the X of "expected X". */
static void expected_phrase(const ConfigField *f, char *out, size_t cap) {
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
        if (f->min > 0) snprintf(out, cap, "a sequence of %.0f to %d mappings or include paths", f->min, list_most(f));
        else snprintf(out, cap, "a sequence of at most %d mappings or include paths", list_most(f));
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
static void format_value(const ConfigField *f, const void *member, char *out, size_t cap) {
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

static void store_number(const ConfigField *f, void *member, double real, long long integer,
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
        store_number(f, member, f->fallback, (long long)f->fallback, 0);
        break;
    case CONFIG_UINT64: store_number(f, member, 0, 0, (unsigned long long)f->fallback); break;
    case CONFIG_BOOL: *(int *)member = f->fallback != 0; break;
    case CONFIG_STRING: snprintf(member, f->size, "%s", f->fallback_text ? f->fallback_text : ""); break;
    case CONFIG_ENUM:
        *(int *)member = f->fallback_text ? enum_index(f, f->fallback_text, strlen(f->fallback_text)) : 0;
        break;
    default: break;
    }
}

/* ---- scalar text -------------------------------------------------------- */

static int all_digits(const char *p) {
    if (!isdigit((unsigned char)*p)) return 0;
    while (isdigit((unsigned char)*p)) p++;
    return *p == '\0';
}

static int parse_integer(const char *text, long long *out) {
    const char *p = text + (*text == '-' || *text == '+');
    if (!all_digits(p)) return -1;
    errno = 0;
    *out = strtoll(text, NULL, 10);
    return errno ? -1 : 0;
}

static int parse_natural(const char *text, unsigned long long *out) {
    const char *p = text + (*text == '+');
    if (!all_digits(p)) return -1;
    errno = 0;
    *out = strtoull(text, NULL, 10);
    return errno ? -1 : 0;
}

/* Decimal notation only: [sign] digits [. digits] [e [sign] digits], at
 * least one digit before the exponent; no nan, inf or hex. */
static int parse_real(const char *text, double *out) {
    const char *p = text + (*text == '-' || *text == '+');
    int digits = 0;
    while (isdigit((unsigned char)*p)) p++, digits++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p)) p++, digits++;
    }
    if (!digits) return -1;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += (*p == '-' || *p == '+');
        if (!all_digits(p)) return -1;
    } else if (*p) {
        return -1;
    }
    *out = strtod(text, NULL);
    return isfinite(*out) ? 0 : -1;
}

/* Plain text that YAML reads as null. */
static int is_null_text(const char *t) {
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

static int is_null_scalar(const yaml_node_t *node) {
    return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           is_null_text((const char *)node->data.scalar.value);
}

static int is_quoted(const yaml_node_t *node) {
    return node->type == YAML_SCALAR_NODE && node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
}

/* Scalar text for a message: control bytes as '?', cut after FOUND_TEXT_MAX. */
static void quote_text(const char *text, size_t length, char *out, size_t cap) {
    size_t shown = length < FOUND_TEXT_MAX ? length : FOUND_TEXT_MAX, n = 0;
    for (size_t i = 0; i < shown && n + 1 < cap; i++)
        out[n++] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
    out[n] = '\0';
    if (shown < length && n + 4 < cap) strcat(out, "...");
}

/* The Y of "found Y" for a node. */
static void describe_node(const yaml_node_t *node, char *out, size_t cap) {
    char text[FOUND_TEXT_MAX + 8];
    switch (node->type) {
    case YAML_MAPPING_NODE: snprintf(out, cap, "a mapping"); return;
    case YAML_SEQUENCE_NODE: snprintf(out, cap, "a sequence"); return;
    case YAML_SCALAR_NODE:
        if (is_null_scalar(node)) {
            snprintf(out, cap, "an empty value");
            return;
        }
        quote_text((const char *)node->data.scalar.value, node->data.scalar.length, text, sizeof text);
        snprintf(out, cap, is_quoted(node) ? "the string \"%s\"" : "'%s'", text);
        return;
    default: snprintf(out, cap, "nothing"); return;
    }
}

/* ---- reading and parsing files ------------------------------------------ */

/* Which file on disk a text came from, to find include cycles. */
typedef struct FileIdentity {
    int known;             /* 0: text given in memory */
    dev_t device;
    ino_t inode;
} FileIdentity;

typedef struct FileText {
    char *bytes;
    size_t length;
    FileIdentity identity;
} FileText;

/* A problem with a whole file: with `from`, at the include that names it. */
static int fail_file(DdError *err, const Mark *from, const char *path, const char *expected,
                     const char *found) {
    if (from) return fail_at(err, *from, "expected %s, found %s: %s", expected, path, found);
    return dd_fail(err, "%s: expected %s, found %s", path, expected, found);
}

static int fail_errno(DdError *err, const Mark *from, const char *path, int code) {
    char buffer[128];
    return fail_file(err, from, path, "a readable file", strerror_r(code, buffer, sizeof buffer));
}

static int read_file_text(const char *path, const Mark *from, FileText *out, DdError *err) {
    char found[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return fail_errno(err, from, path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int code = errno;
        close(fd);
        return fail_errno(err, from, path, code);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail_file(err, from, path, "a regular file", S_ISDIR(st.st_mode) ? "a directory" : "a special file");
    }
    if (st.st_size > CONFIG_MAX_FILE_BYTES) {
        close(fd);
        char expected[64];
        snprintf(expected, sizeof expected, "a file of at most %d bytes", CONFIG_MAX_FILE_BYTES);
        snprintf(found, sizeof found, "%lld bytes", (long long)st.st_size);
        return fail_file(err, from, path, expected, found);
    }
    size_t cap = (size_t)st.st_size + 1;      /* one more byte tells a file that grew */
    char *bytes = malloc(cap);
    size_t length = 0;
    ssize_t got = 1;
    while (bytes && length < cap && got > 0) {
        got = read(fd, bytes + length, cap - length);
        if (got > 0) length += (size_t)got;
        else if (got < 0 && errno == EINTR) got = 1;
    }
    int code = errno;
    close(fd);
    if (!bytes) return fail_file(err, from, path, "memory to read it", "none");
    if (got < 0) {
        free(bytes);
        return fail_errno(err, from, path, code);
    }
    if (length == cap) {
        free(bytes);
        return fail_file(err, from, path, "a file that stays the same while read", "one that grew");
    }
    *out = (FileText){bytes, length, {1, st.st_dev, st.st_ino}};
    return 0;
}

static Mark mark_from(const char *path, yaml_mark_t mark) {
    return (Mark){path, (int)mark.line + 1, (int)mark.column + 1};
}

/* The place of a reader error, which libyaml gives as a byte offset. */
static Mark mark_at_offset(const char *path, const FileText *text, size_t offset) {
    Mark m = {path, 1, 1};
    for (size_t i = 0; i < offset && i < text->length; i++) {
        unsigned char c = (unsigned char)text->bytes[i];
        if (c == '\n') m.line++, m.column = 1;
        else if ((c & 0xC0) != 0x80) m.column++;
    }
    return m;
}

static int fail_parse(DdError *err, const char *path, const FileText *text, const yaml_parser_t *parser) {
    const char *problem = parser->problem ? parser->problem : "an unknown problem";
    if (parser->error == YAML_MEMORY_ERROR)
        return dd_fail(err, "%s: expected memory to parse it, found none", path);
    if (parser->error == YAML_READER_ERROR) {
        Mark at = mark_at_offset(path, text, parser->problem_offset);
        if (parser->problem_value < 0) return fail_at(err, at, "expected UTF-8 text, found %s", problem);
        return fail_at(err, at, "expected UTF-8 text, found %s (0x%02X)", problem, parser->problem_value);
    }
    /* libyaml says "found X" or "did not find expected X"; fold those
     * into the one form of every message. */
    Mark at = mark_from(path, parser->problem_mark), started = mark_from(path, parser->context_mark);
    char context[160] = "";
    if (parser->context)
        snprintf(context, sizeof context, " (%s started at %d:%d)", parser->context, started.line, started.column);
    static const char *const missing[] = {"did not find expected ", "could not find expected "};
    for (int i = 0; i < 2; i++)
        if (strncmp(problem, missing[i], strlen(missing[i])) == 0)
            return fail_at(err, at, "expected %s%s, found something else", problem + strlen(missing[i]), context);
    if (strncmp(problem, "found ", 6) == 0) problem += 6;
    return fail_at(err, at, "expected valid YAML, found %s%s", problem, context);
}

static Mark node_mark(const char *path, const yaml_node_t *node) { return mark_from(path, node->start_mark); }

/* The anchor of an event, if it has one. */
static const yaml_char_t *event_anchor(const yaml_event_t *event) {
    switch (event->type) {
    case YAML_SCALAR_EVENT: return event->data.scalar.anchor;
    case YAML_SEQUENCE_START_EVENT: return event->data.sequence_start.anchor;
    case YAML_MAPPING_START_EVENT: return event->data.mapping_start.anchor;
    default: return NULL;
    }
}

/* libyaml slows down with the square of the nesting depth in its scanner
 * (a 1 MiB file of '[' takes hours) and of the anchor count in its loader,
 * so the events are read once first, stopping at the first level too deep,
 * anchor too many or second document; syntax errors are reported here. */
static int check_events(const char *path, const FileText *text, DdError *err) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return dd_fail(err, "%s: expected memory to parse it, found none", path);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text->bytes, text->length);
    int depth = 0, anchors = 0, documents = 0, rc = 0, done = 0;
    while (!done && rc == 0) {
        yaml_event_t event;
        if (!yaml_parser_parse(&parser, &event)) {
            rc = fail_parse(err, path, text, &parser);
            break;
        }
        depth += event.type == YAML_SEQUENCE_START_EVENT || event.type == YAML_MAPPING_START_EVENT;
        depth -= event.type == YAML_SEQUENCE_END_EVENT || event.type == YAML_MAPPING_END_EVENT;
        anchors += event_anchor(&event) != NULL;
        documents += event.type == YAML_DOCUMENT_START_EVENT;
        done = event.type == YAML_STREAM_END_EVENT;
        Mark at = mark_from(path, event.start_mark);
        yaml_event_delete(&event);
        if (depth > CONFIG_MAX_NESTING)
            rc = fail_at(err, at, "expected at most %d nested levels, found more", CONFIG_MAX_NESTING);
        else if (anchors > CONFIG_MAX_ANCHORS)
            rc = fail_at(err, at, "expected at most %d anchors, found more", CONFIG_MAX_ANCHORS);
        else if (documents > 1)
            rc = fail_at(err, at, "expected one document, found a second one");
    }
    yaml_parser_delete(&parser);
    return rc;
}

/* Parses the one document of a file; its root must be a mapping. */
static int parse_document(const char *path, const FileText *text, yaml_document_t *document, DdError *err) {
    if (check_events(path, text, err)) return -1;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return dd_fail(err, "%s: expected memory to parse it, found none", path);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text->bytes, text->length);
    int rc = yaml_parser_load(&parser, document) ? 0 : fail_parse(err, path, text, &parser);
    yaml_parser_delete(&parser);
    if (rc) return -1;
    const yaml_node_t *root = yaml_document_get_root_node(document);
    char found[FOUND_TEXT_MAX + 32];
    if (!root) {
        rc = fail_at(err, (Mark){path, 1, 1}, "expected a mapping, found an empty document");
    } else if (root->type != YAML_MAPPING_NODE) {
        describe_node(root, found, sizeof found);
        rc = fail_at(err, node_mark(path, root), "expected a mapping, found %s", found);
    }
    if (rc) yaml_document_delete(document);
    return rc;
}

/* Joins an include path to the folder of the file naming it, and removes
 * "." and "dir/.." steps so that messages show short paths. */
static int resolve_path(const char *from_file, const char *relative, char *out, size_t cap) {
    const char *slash = strrchr(from_file, '/');
    int folder = relative[0] != '/' && slash ? (int)(slash - from_file + 1) : 0;
    char joined[PATH_MAX];
    if ((size_t)snprintf(joined, sizeof joined, "%.*s%s", folder, from_file, relative) >= sizeof joined) return -1;
    size_t n = 0, kept_parts = 0, fixed_parts = 0; /* fixed: leading ".." that cannot be removed */
    int absolute = joined[0] == '/';
    if (absolute) out[n++] = '/';
    for (char *save = NULL, *part = strtok_r(joined, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
        if (!strcmp(part, ".")) continue;
        if (!strcmp(part, "..") && kept_parts > fixed_parts) {
            n--;                                           /* back over the part and its slash */
            while (n > (size_t)absolute && out[n - 1] != '/') n--;
            kept_parts--;
            continue;
        }
        if (!strcmp(part, "..") && absolute) continue;
        size_t length = strlen(part);
        if (n + length + 2 > cap) return -1;
        memcpy(out + n, part, length);
        n += length;
        out[n++] = '/';
        kept_parts++;
        if (!strcmp(part, "..")) fixed_parts++;
    }
    if (n > (size_t)absolute) n--;                         /* the last slash */
    else if (!absolute) out[n++] = '.';
    out[n] = '\0';
    return 0;
}

/* ---- pass 1: apply files to the struct --------------------------------- */

/* A file being applied, in the chain of includes that led to it. */
typedef struct Frame {
    const char *path;
    FileIdentity identity;
} Frame;

typedef struct Loader {
    ConfigPlaces places;
    char **paths;          /* every file name the places point to */
    size_t path_count, path_capacity;
    Frame stack[CONFIG_MAX_INCLUDE_DEPTH];
    int depth;
    DdError *err;
} Loader;

/* One parsed file being applied. */
typedef struct Source {
    const char *path;
    yaml_document_t document;
} Source;

static yaml_node_t *node_at(const Source *s, int index) {
    return yaml_document_get_node((yaml_document_t *)&s->document, index);
}

static const char *keep_path(Loader *L, const char *path) {
    if (L->path_count == L->path_capacity) {
        size_t capacity = L->path_capacity ? 2 * L->path_capacity : 8;
        char **paths = realloc(L->paths, capacity * sizeof *paths);
        if (!paths) return NULL;
        L->paths = paths;
        L->path_capacity = capacity;
    }
    char *copy = strdup(path);
    if (copy) L->paths[L->path_count++] = copy;
    return copy;
}

static void loader_free(Loader *L) {
    for (size_t i = 0; i < L->path_count; i++) free(L->paths[i]);
    free(L->paths);
    free(L->places.items);
}

static int fail_node(Loader *L, const Source *s, const yaml_node_t *node, const char *expected,
                     const char *key) {
    char found[FOUND_TEXT_MAX + 32];
    describe_node(node, found, sizeof found);
    if (key) return fail_at(L->err, node_mark(s->path, node), "expected %s for '%s', found %s", expected, key, found);
    return fail_at(L->err, node_mark(s->path, node), "expected %s, found %s", expected, found);
}

static int fail_field(Loader *L, const Source *s, const yaml_node_t *node, const ConfigField *f) {
    char expected[512];
    expected_phrase(f, expected, sizeof expected);
    return fail_node(L, s, node, expected, f->key);
}

static int apply_mapping(Loader *L, const Source *s, const yaml_node_t *map, const ConfigSchema *schema,
                         void *object);
static int load_file(Loader *L, const Mark *from, const char *path, const ConfigSchema *schema, void *object);

/* A path string in a file stands for the struct that file describes. */
static int apply_path(Loader *L, const Source *s, const yaml_node_t *node, const ConfigSchema *schema,
                      void *object) {
    char path[PATH_MAX];
    const char *text = (const char *)node->data.scalar.value;
    if (strlen(text) != node->data.scalar.length || resolve_path(s->path, text, path, sizeof path) != 0) {
        char expected[64];
        snprintf(expected, sizeof expected, "a file path of at most %d bytes", PATH_MAX - 1);
        return fail_node(L, s, node, expected, NULL);
    }
    forget_places(&L->places, object, schema->size);
    memset(object, 0, schema->size);
    Mark from = node_mark(s->path, node);
    return load_file(L, &from, path, schema, object);
}

static int is_path_node(const yaml_node_t *node) {
    return node->type == YAML_SCALAR_NODE && !is_null_scalar(node);
}

static int apply_struct(Loader *L, const Source *s, const yaml_node_t *node, const ConfigSchema *schema,
                        void *object) {
    if (node->type == YAML_MAPPING_NODE) return apply_mapping(L, s, node, schema, object);
    return apply_path(L, s, node, schema, object);
}

static int apply_list(Loader *L, const Source *s, const yaml_node_t *node, const ConfigField *f, void *member,
                      void *object) {
    if (node->type != YAML_SEQUENCE_NODE) return fail_field(L, s, node, f);
    int count = (int)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (count < f->min || count > list_most(f)) {
        char expected[512], found[64];
        expected_phrase(f, expected, sizeof expected);
        describe_count(count, found, sizeof found);
        return fail_at(L->err, node_mark(s->path, node), "expected %s for '%s', found %s", expected, f->key, found);
    }
    forget_places(&L->places, member, f->size);
    memset(member, 0, f->size);
    set_list_count(f, object, count);
    for (int i = 0; i < count; i++) {
        const yaml_node_t *item = node_at(s, node->data.sequence.items.start[i]);
        if (item->type != YAML_MAPPING_NODE && !is_path_node(item))
            return fail_node(L, s, item, "a mapping or an include path", f->key);
        if (apply_struct(L, s, item, f->schema, (char *)member + (size_t)i * f->schema->size)) return -1;
    }
    return 0;
}

static int apply_scalar(Loader *L, const Source *s, const yaml_node_t *node, const ConfigField *f, void *member) {
    int textual = f->type == CONFIG_STRING || f->type == CONFIG_ENUM;
    if (node->type != YAML_SCALAR_NODE || is_null_scalar(node) || (is_quoted(node) && !textual))
        return fail_field(L, s, node, f);
    const char *text = (const char *)node->data.scalar.value;
    size_t length = node->data.scalar.length;
    double real = 0;
    long long integer = 0;
    unsigned long long natural = 0;
    int ok = 0;
    switch (f->type) {
    case CONFIG_INT:
        ok = parse_integer(text, &integer) == 0 && number_in_range(f, (double)integer);
        break;
    case CONFIG_UINT64:
        ok = parse_natural(text, &natural) == 0 && number_in_range(f, (double)natural);
        break;
    case CONFIG_FLOAT:
    case CONFIG_DOUBLE:
        ok = parse_real(text, &real) == 0 && number_in_range(f, real);
        break;
    case CONFIG_BOOL: {
        int yes = !strcmp(text, "true") || !strcmp(text, "True") || !strcmp(text, "TRUE");
        int no = !strcmp(text, "false") || !strcmp(text, "False") || !strcmp(text, "FALSE");
        if ((ok = yes || no)) *(int *)member = yes;
        break;
    }
    case CONFIG_STRING:
        if ((ok = strlen(text) == length && length >= (size_t)f->min && length < f->size)) {
            memset(member, 0, f->size);  /* no tail of an overridden longer value */
            memcpy(member, text, length);
        }
        break;
    case CONFIG_ENUM: {
        int index = enum_index(f, text, length);
        if ((ok = index >= 0)) *(int *)member = index;
        break;
    }
    default: break;
    }
    if (!ok) return fail_field(L, s, node, f);
    store_number(f, member, real, integer, natural);
    return 0;
}

static int apply_value(Loader *L, const Source *s, const yaml_node_t *node, const ConfigField *f, void *object) {
    char *member = (char *)object + f->offset;
    int rc;
    if (f->type == CONFIG_STRUCT) {
        if (node->type != YAML_MAPPING_NODE && !is_path_node(node)) return fail_field(L, s, node, f);
        rc = apply_struct(L, s, node, f->schema, member);
    } else if (f->type == CONFIG_LIST) {
        rc = apply_list(L, s, node, f, member, object);
    } else {
        rc = apply_scalar(L, s, node, f, member);
    }
    if (rc) return -1;
    /* A struct gets this place too: checks that blame the whole struct point
     * where it was chosen (the path), not inside the file it names. */
    return remember_place(&L->places, (Place){member, f->size, f, 0, node_mark(s->path, node)}, L->err);
}

static int field_index(const ConfigSchema *schema, const yaml_node_t *key) {
    const char *text = (const char *)key->data.scalar.value;
    size_t length = key->data.scalar.length;
    if (length == 7 && memcmp(text, "include", 7) == 0) return schema->field_count;
    for (int i = 0; i < schema->field_count; i++)
        if (strlen(schema->fields[i].key) == length && memcmp(schema->fields[i].key, text, length) == 0) return i;
    return -1;
}

static int fail_unknown_key(Loader *L, const Source *s, const yaml_node_t *key, const ConfigSchema *schema) {
    char keys[DD_ERROR_MESSAGE_MAX / 2], found[FOUND_TEXT_MAX + 32];
    size_t n = 0;
    for (int i = 0; i < schema->field_count && n < sizeof keys; i++)
        n += (size_t)snprintf(keys + n, sizeof keys - n, "%s, ", schema->fields[i].key);
    if (n < sizeof keys) snprintf(keys + n, sizeof keys - n, "include");
    describe_node(key, found, sizeof found);
    return fail_at(L->err, node_mark(s->path, key), "expected a %s key (%s), found %s", schema->name, keys, found);
}

/* Checks every key of a mapping (known, once each) before applying any: the
 * include first, then the keys written beside it, which override it. */
static int apply_mapping(Loader *L, const Source *s, const yaml_node_t *map, const ConfigSchema *schema,
                         void *object) {
    const yaml_node_t *keys[CONFIG_MAX_FIELDS + 1] = {0}, *values[CONFIG_MAX_FIELDS + 1] = {0};
    for (const yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        const yaml_node_t *key = node_at(s, pair->key);
        if (key->type != YAML_SCALAR_NODE || is_null_scalar(key)) return fail_node(L, s, key, "a key", NULL);
        int index = field_index(schema, key);
        if (index < 0) return fail_unknown_key(L, s, key, schema);
        if (keys[index]) {
            char found[FOUND_TEXT_MAX + 32];
            describe_node(key, found, sizeof found);
            return fail_at(L->err, node_mark(s->path, key), "expected each key once, found %s again (first at %d:%d)",
                           found, (int)keys[index]->start_mark.line + 1, (int)keys[index]->start_mark.column + 1);
        }
        keys[index] = key;
        values[index] = node_at(s, pair->value);
    }
    const yaml_node_t *include = values[schema->field_count];
    if (include) {
        if (!is_path_node(include)) return fail_node(L, s, include, "an include path", NULL);
        if (apply_path(L, s, include, schema, object)) return -1;
    }
    for (int i = 0; i < schema->field_count; i++)
        if (values[i] && apply_value(L, s, values[i], &schema->fields[i], object)) return -1;
    /* Remembered last: replacing a member at the struct's own address (an
     * include, a path, a list) forgets what lies inside that member. */
    Place mapping = {object, schema->size, schema, 1, node_mark(s->path, map)};
    return remember_place(&L->places, mapping, L->err);
}

static int fail_cycle(Loader *L, const Mark *from, int first, const char *path) {
    char chain[DD_ERROR_MESSAGE_MAX];
    size_t n = 0;
    for (int i = first; i < L->depth && n < sizeof chain; i++)
        n += (size_t)snprintf(chain + n, sizeof chain - n, "%s -> ", L->stack[i].path);
    if (n < sizeof chain) snprintf(chain + n, sizeof chain - n, "%s", path);
    return fail_at(L->err, *from, "expected no include cycle, found %s", chain);
}

/* Applies the text of one file: checks the include chain, parses, applies
 * its mapping to object. Takes ownership of text->bytes. */
static int apply_text(Loader *L, const Mark *from, const char *path, FileText *text, const ConfigSchema *schema,
                      void *object) {
    int rc = 0;
    const FileIdentity *id = &text->identity;
    for (int i = 0; i < L->depth && id->known && rc == 0; i++) {
        const FileIdentity *seen = &L->stack[i].identity;
        if (seen->known && seen->device == id->device && seen->inode == id->inode) rc = fail_cycle(L, from, i, path);
    }
    Source source = {.path = path};
    if (rc == 0) rc = parse_document(path, text, &source.document, L->err);
    free(text->bytes);
    if (rc) return -1;
    L->stack[L->depth++] = (Frame){path, *id};
    rc = apply_mapping(L, &source, yaml_document_get_root_node(&source.document), schema, object);
    L->depth--;
    yaml_document_delete(&source.document);
    return rc;
}

static int load_file(Loader *L, const Mark *from, const char *path, const ConfigSchema *schema, void *object) {
    if (L->depth >= CONFIG_MAX_INCLUDE_DEPTH)
        return fail_at(L->err, *from, "expected at most %d nested includes, found %s at depth %d",
                       CONFIG_MAX_INCLUDE_DEPTH, path, L->depth + 1);
    const char *kept = keep_path(L, path);
    if (!kept) return fail_file(L->err, from, path, "memory to load it", "none");
    FileText text;
    if (read_file_text(kept, from, &text, L->err)) return -1;
    return apply_text(L, from, kept, &text, schema, object);
}

/* ---- pass 2: defaults and required keys --------------------------------- */

static int finish_struct(const ConfigSchema *schema, void *object, const ConfigPlaces *places, Mark around,
                         DdError *err) {
    const Place *own = find_place(places, object, schema);
    Mark here = own ? own->mark : around;
    for (int i = 0; i < schema->field_count; i++) {
        const ConfigField *f = &schema->fields[i];
        char *member = (char *)object + f->offset;
        int written = find_place(places, member, f) != NULL;
        if (!written && f->required)
            return fail_at(err, here, "expected a value for required key '%s', found none", f->key);
        if (f->type == CONFIG_STRUCT) {
            if (finish_struct(f->schema, member, places, here, err)) return -1;
        } else if (f->type == CONFIG_LIST) {
            int count = written ? list_count(f, object) : 0;
            for (int k = 0; k < count; k++)
                if (finish_struct(f->schema, member + (size_t)k * f->schema->size, places, here, err)) return -1;
        } else if (!written) {
            store_default(f, member);
        }
    }
    return 0;
}

int config_set_defaults(const ConfigSchema *schema, void *object, DdError *err) {
    if (check_schema(schema, err)) return -1;
    memset(object, 0, schema->size);
    return finish_struct(schema, object, NULL, (Mark){0}, err);
}

/* ---- pass 3: ranges and cross-field checks -------------------------------- */

static int member_in_range(const ConfigField *f, const void *member) {
    switch (f->type) {
    case CONFIG_INT: return number_in_range(f, *(const int *)member);
    case CONFIG_UINT64: return number_in_range(f, (double)*(const uint64_t *)member);
    case CONFIG_FLOAT: return number_in_range(f, *(const float *)member);
    case CONFIG_DOUBLE: return number_in_range(f, *(const double *)member);
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
    if (check_schema(schema, err)) return -1;
    char expected[512], found[FOUND_TEXT_MAX + 8];
    for (int i = 0; i < schema->field_count; i++) {
        const ConfigField *f = &schema->fields[i];
        const char *member = (const char *)object + f->offset;
        if (f->type == CONFIG_STRUCT) {
            if (config_validate(f->schema, member, places, err)) return -1;
        } else if (f->type == CONFIG_LIST) {
            int count = list_count(f, object);
            if (count < f->min || count > list_most(f)) {
                expected_phrase(f, expected, sizeof expected);
                describe_count(count, found, sizeof found);
                return config_fail_at(places, member, f->size, err, "expected %s for '%s', found %s", expected,
                                      f->key, found);
            }
            for (int k = 0; k < count; k++)
                if (config_validate(f->schema, member + (size_t)k * f->schema->size, places, err)) return -1;
        } else if (!member_in_range(f, member)) {
            expected_phrase(f, expected, sizeof expected);
            format_value(f, member, found, sizeof found);
            return config_fail_at(places, member, f->size, err, "expected %s for '%s', found '%s'", expected,
                                  f->key, found);
        }
    }
    return schema->check ? schema->check(object, places, err) : 0;
}

/* ---- loading, from the top ------------------------------------------------ */

static int load(const ConfigSchema *schema, void *object, const char *path, FileText *text, DdError *err) {
    if (check_schema(schema, err)) {
        if (text) free(text->bytes);
        return -1;
    }
    memset(object, 0, schema->size);
    Loader L = {.err = err};
    int rc;
    const char *kept = text ? keep_path(&L, path) : NULL;
    if (!text) rc = load_file(&L, NULL, path, schema, object);
    else if (kept) rc = apply_text(&L, NULL, kept, text, schema, object);
    else {
        free(text->bytes);
        rc = dd_fail(err, "%s: expected memory to load it, found none", path);
    }
    if (rc == 0) rc = finish_struct(schema, object, &L.places, (Mark){0}, err);
    if (rc == 0) rc = config_validate(schema, object, &L.places, err);
    loader_free(&L);
    return rc;
}

int config_load(const ConfigSchema *schema, void *object, const char *path, DdError *err) {
    return load(schema, object, path, NULL, err);
}

int config_load_text(const ConfigSchema *schema, void *object, const char *text, size_t length, const char *path,
                     DdError *err) {
    if (length > CONFIG_MAX_FILE_BYTES)
        return dd_fail(err, "%s: expected a file of at most %d bytes, found %zu bytes", path, CONFIG_MAX_FILE_BYTES,
                       length);
    FileText copy = {malloc(length + 1), length, {0}};
    if (!copy.bytes) return dd_fail(err, "%s: expected memory to load it, found none", path);
    memcpy(copy.bytes, text, length);
    return load(schema, object, path, &copy, err);
}

/* ---- picking the schema of a file ------------------------------------------ */

static int schema_knows_keys(const ConfigSchema *schema, const Source *s, const yaml_node_t *map) {
    int written = 0;
    for (const yaml_node_pair_t *pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        const yaml_node_t *key = node_at(s, pair->key);
        if (key->type != YAML_SCALAR_NODE) return 0;
        int index = field_index(schema, key);
        if (index < 0) return 0;
        written += index < schema->field_count;
    }
    return written > 0;
}

/* The include path of a mapping that holds nothing else, into next. */
static int only_include(const Source *s, const yaml_node_t *map, char *next, size_t cap) {
    if (map->data.mapping.pairs.top - map->data.mapping.pairs.start != 1) return 0;
    const yaml_node_t *key = node_at(s, map->data.mapping.pairs.start->key);
    const yaml_node_t *value = node_at(s, map->data.mapping.pairs.start->value);
    if (key->type != YAML_SCALAR_NODE || strcmp((const char *)key->data.scalar.value, "include") != 0 ||
        !is_path_node(value))
        return 0;
    return resolve_path(s->path, (const char *)value->data.scalar.value, next, cap) == 0;
}

int config_pick_schema(const ConfigSchema *const *candidates, int count, const char *path) {
    char current[PATH_MAX], next[PATH_MAX];
    snprintf(current, sizeof current, "%s", path);
    for (int depth = 0; depth < CONFIG_MAX_INCLUDE_DEPTH; depth++) {
        FileText text;
        Source s = {.path = current};
        if (read_file_text(current, NULL, &text, NULL)) return 0;
        int parsed = parse_document(current, &text, &s.document, NULL) == 0;
        free(text.bytes);
        if (!parsed) return 0;
        const yaml_node_t *root = yaml_document_get_root_node(&s.document);
        int pick = -1, follow = 0;
        for (int i = 0; i < count && pick < 0; i++)
            if (schema_knows_keys(candidates[i], &s, root)) pick = i;
        if (pick < 0) follow = only_include(&s, root, next, sizeof next);
        yaml_document_delete(&s.document);
        if (pick >= 0) return pick;
        if (!follow) return 0;
        memcpy(current, next, sizeof current);
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------------- */

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
            int count = list_count(f, object);
            for (int k = 0; k < count && k < list_capacity(f); k++)
                if (emit_struct(emitter, f->schema, member + (size_t)k * f->schema->size, err)) return -1;
            ok = yaml_sequence_end_event_initialize(&event);
            if (emit(emitter, &event, ok, err)) return -1;
        } else {
            char text[512];
            format_value(f, member, text, sizeof text);
            int quote = f->type == CONFIG_STRING && is_null_text(text);  /* "" or "null" stay strings */
            if (emit_scalar(emitter, text, quote ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE, err))
                return -1;
        }
    }
    ok = yaml_mapping_end_event_initialize(&event);
    return emit(emitter, &event, ok, err);
}

int config_write(FILE *out, const ConfigSchema *schema, const void *object, DdError *err) {
    if (check_schema(schema, err)) return -1;
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
