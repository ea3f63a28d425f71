/*
 * yaml_config.c - the loader of yaml_config.h: reads YAML files with libyaml
 * and applies them to a struct through its schema.
 *
 * A load runs three passes over one destination struct:
 *   1. apply (here): walk the YAML nodes of the file, and of every file it
 *      includes, store each value that is written, and remember where it came
 *      from (a place: file, line, column, keyed by the member's address);
 *   2. finish (config_fields.c): give every member that no file wrote its
 *      default, or fail for a required one, pointing at the start of the
 *      mapping that lacks it;
 *   3. validate (config_fields.c): check ranges again and run the schemas'
 *      cross-field checks, which find the places of the members they blame.
 * The places, and the copies of the file names they point to, live until the
 * load returns. libyaml parses each file into a yaml_document_t; the walk
 * descends only where the schema does, so it is bounded by the schema and
 * the 1 MiB file limit, whatever anchors and aliases the file holds.
 */
#include "nn/yaml_config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "nn/config_fields.h"

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

static int is_null_scalar(const yaml_node_t *node) {
    return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           config_is_null_text((const char *)node->data.scalar.value);
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
    if (from) return config_fail_at_mark(err, *from, "expected %s, found %s: %s", expected, path, found);
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
        if (parser->problem_value < 0) return config_fail_at_mark(err, at, "expected UTF-8 text, found %s", problem);
        return config_fail_at_mark(err, at, "expected UTF-8 text, found %s (0x%02X)", problem, parser->problem_value);
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
            return config_fail_at_mark(err, at, "expected %s%s, found something else", problem + strlen(missing[i]),
                                       context);
    if (strncmp(problem, "found ", 6) == 0) problem += 6;
    return config_fail_at_mark(err, at, "expected valid YAML, found %s%s", problem, context);
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
            rc = config_fail_at_mark(err, at, "expected at most %d nested levels, found more", CONFIG_MAX_NESTING);
        else if (anchors > CONFIG_MAX_ANCHORS)
            rc = config_fail_at_mark(err, at, "expected at most %d anchors, found more", CONFIG_MAX_ANCHORS);
        else if (documents > 1)
            rc = config_fail_at_mark(err, at, "expected one document, found a second one");
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
        rc = config_fail_at_mark(err, (Mark){path, 1, 1}, "expected a mapping, found an empty document");
    } else if (root->type != YAML_MAPPING_NODE) {
        describe_node(root, found, sizeof found);
        rc = config_fail_at_mark(err, node_mark(path, root), "expected a mapping, found %s", found);
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
    if (key)
        return config_fail_at_mark(L->err, node_mark(s->path, node), "expected %s for '%s', found %s", expected, key,
                                   found);
    return config_fail_at_mark(L->err, node_mark(s->path, node), "expected %s, found %s", expected, found);
}

static int fail_field(Loader *L, const Source *s, const yaml_node_t *node, const ConfigField *f) {
    char expected[512];
    config_expected_phrase(f, expected, sizeof expected);
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
    config_forget_places(&L->places, object, schema->size);
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
    if (count < f->min || count > config_list_most(f)) {
        char expected[512], found[64];
        config_expected_phrase(f, expected, sizeof expected);
        config_describe_count(count, found, sizeof found);
        return config_fail_at_mark(L->err, node_mark(s->path, node), "expected %s for '%s', found %s", expected,
                                   f->key, found);
    }
    config_forget_places(&L->places, member, f->size);
    memset(member, 0, f->size);
    config_set_list_count(f, object, count);
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
        ok = parse_integer(text, &integer) == 0 && config_number_in_range(f, (double)integer);
        break;
    case CONFIG_UINT64:
        ok = parse_natural(text, &natural) == 0 && config_number_in_range(f, (double)natural);
        break;
    case CONFIG_FLOAT:
    case CONFIG_DOUBLE:
        ok = parse_real(text, &real) == 0 && config_number_in_range(f, real);
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
        int index = config_enum_index(f, text, length);
        if ((ok = index >= 0)) *(int *)member = index;
        break;
    }
    default: break;
    }
    if (!ok) return fail_field(L, s, node, f);
    config_store_number(f, member, real, integer, natural);
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
    return config_remember_place(&L->places, (Place){member, f->size, f, 0, node_mark(s->path, node)}, L->err);
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
    return config_fail_at_mark(L->err, node_mark(s->path, key), "expected a %s key (%s), found %s", schema->name,
                               keys, found);
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
            return config_fail_at_mark(L->err, node_mark(s->path, key),
                                       "expected each key once, found %s again (first at %d:%d)", found,
                                       (int)keys[index]->start_mark.line + 1, (int)keys[index]->start_mark.column + 1);
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
    return config_remember_place(&L->places, mapping, L->err);
}

static int fail_cycle(Loader *L, const Mark *from, int first, const char *path) {
    char chain[DD_ERROR_MESSAGE_MAX];
    size_t n = 0;
    for (int i = first; i < L->depth && n < sizeof chain; i++)
        n += (size_t)snprintf(chain + n, sizeof chain - n, "%s -> ", L->stack[i].path);
    if (n < sizeof chain) snprintf(chain + n, sizeof chain - n, "%s", path);
    return config_fail_at_mark(L->err, *from, "expected no include cycle, found %s", chain);
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
        return config_fail_at_mark(L->err, *from, "expected at most %d nested includes, found %s at depth %d",
                                   CONFIG_MAX_INCLUDE_DEPTH, path, L->depth + 1);
    const char *kept = keep_path(L, path);
    if (!kept) return fail_file(L->err, from, path, "memory to load it", "none");
    FileText text;
    if (read_file_text(kept, from, &text, L->err)) return -1;
    return apply_text(L, from, kept, &text, schema, object);
}

/* ---- loading, from the top ------------------------------------------------ */

static int load(const ConfigSchema *schema, void *object, const char *path, FileText *text, DdError *err) {
    if (config_check_schema(schema, err)) {
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
    if (rc == 0) rc = config_finish_struct(schema, object, &L.places, (Mark){0}, err);
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
