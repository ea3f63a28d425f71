/*
 * weights_import.c - foreign safetensors weights into ViTParams and head
 * buffers, and from there into the teacher's HDF5 file (weights_import.h).
 */
#include "nn/weights_import.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A set being read: the prefix in front of its names, and which of its
 * entries have been used (so that the leftovers can be reported). */
typedef struct Source {
    const SafetensorsSet *set;
    char prefix[TENSOR_NAME_MAX];
    uint8_t *used;            /* [set->count] */
} Source;

static int source_begin(Source *s, const SafetensorsSet *set, DdError *err) {
    memset(s, 0, sizeof *s);
    s->set = set;
    s->used = calloc((size_t)(set->count ? set->count : 1), 1);
    if (!s->used) return dd_fail(err, "%s: out of memory", set->path);
    return 0;
}

static void source_end(Source *s) {
    free(s->used);
    s->used = NULL;
}

/* The entry of prefix + name (marked used), or NULL. */
static const SafetensorsEntry *source_find(Source *s, const char *name) {
    char full[2 * TENSOR_NAME_MAX];
    snprintf(full, sizeof full, "%s%s", s->prefix, name);
    const SafetensorsEntry *entry = safetensors_set_find(s->set, full);
    if (entry) s->used[entry - s->set->entries] = 1;
    return entry;
}

/* Reads prefix + name, which must have the given shape, into out. */
static int source_read(Source *s, const char *name, const TensorShape *shape, float *out, DdError *err) {
    char full[2 * TENSOR_NAME_MAX];
    snprintf(full, sizeof full, "%s%s", s->prefix, name);
    source_find(s, name);
    return safetensors_set_read(s->set, full, shape, out, err);
}

static int starts_with(const char *text, const char *start) {
    return strncmp(text, start, strlen(start)) == 0;
}

/* Finds the prefix in front of anchor: the part before a name that ends
 * with it, at a '.' boundary. 1 found, 0 not, -1 several different ones. */
static int find_prefix(const SafetensorsSet *set, const char *anchor, char *prefix, char *other) {
    size_t m = strlen(anchor);
    int found = 0;
    for (int i = 0; i < set->count; i++) {
        const char *name = set->entries[i].tensor->name;
        size_t n = strlen(name);
        if (n < m || strcmp(name + n - m, anchor) != 0 || (n > m && name[n - m - 1] != '.')) continue;
        if (!found) {
            snprintf(prefix, TENSOR_NAME_MAX, "%.*s", (int)(n - m), name);
            found = 1;
        } else if (strlen(prefix) != n - m || strncmp(prefix, name, n - m) != 0) {
            snprintf(other, TENSOR_NAME_MAX, "%.*s", (int)(n - m), name);
            return -1;
        }
    }
    return found;
}

/* The naming and prefix of a backbone file. */
static int detect_naming(Source *s, const char *given_prefix, WeightNaming *naming, DdError *err) {
    const SafetensorsSet *set = s->set;
    char prefixes[2][TENSOR_NAME_MAX], other[TENSOR_NAME_MAX];
    int found[2];
    for (int k = 0; k < 2; k++) {
        const char *anchor = weight_naming_anchor((WeightNaming)k);
        if (given_prefix) {
            char full[2 * TENSOR_NAME_MAX];
            snprintf(full, sizeof full, "%s%s", given_prefix, anchor);
            found[k] = safetensors_set_find(set, full) != NULL;
            snprintf(prefixes[k], TENSOR_NAME_MAX, "%s", given_prefix);
        } else if ((found[k] = find_prefix(set, anchor, prefixes[k], other)) < 0) {
            return dd_fail(err, "%s: found %s weights under two prefixes, '%s' and '%s': choose one with --prefix",
                           set->path, weight_naming_title((WeightNaming)k), prefixes[k], other);
        }
    }
    if (found[0] && found[1])
        return dd_fail(err, "%s: found both '%s%s' (%s) and '%s%s' (%s): choose one with --prefix", set->path,
                       prefixes[0], weight_naming_anchor(0), weight_naming_title(0), prefixes[1],
                       weight_naming_anchor(1), weight_naming_title(1));
    if (!found[0] && !found[1])
        return dd_fail(err, "%s: expected a tensor '%s%s' (%s) or '%s%s' (%s), found neither among its %d tensors%s%s%s",
                       set->path, given_prefix ? given_prefix : "", weight_naming_anchor(0), weight_naming_title(0),
                       given_prefix ? given_prefix : "", weight_naming_anchor(1), weight_naming_title(1), set->count,
                       set->count ? " (the first is '" : "", set->count ? set->entries[0].tensor->name : "",
                       set->count ? "')" : "");
    *naming = found[0] ? WEIGHT_NAMING_HUGGING_FACE : WEIGHT_NAMING_ORIGINAL;
    snprintf(s->prefix, sizeof s->prefix, "%s", prefixes[*naming]);
    return 0;
}

/* A piece the naming does not have (the Hugging Face key bias): zeros, and
 * if the file holds it anyway, it must hold zeros. */
static int read_absent_piece(Source *s, const ForeignPiece *piece, float *out, DdError *err) {
    memset(out, 0, piece->count * sizeof *out);
    if (!source_find(s, piece->name)) return 0;
    if (source_read(s, piece->name, &piece->shape, out, err) != 0) return -1;
    float largest = 0.0f;
    for (size_t i = 0; i < piece->count; i++) largest = fmaxf(largest, fabsf(out[i]));
    if (largest != 0.0f || isnan(largest))
        return dd_fail(err, "%s: tensor '%s%s': expected zeros (the model holds the key bias at zero), found "
                       "values up to %g", s->set->path, s->prefix, piece->name, largest);
    return 0;
}

/* The original checkpoints' RoPE periods must be those of the YAML's base. */
static int check_rope_periods(Source *s, const ViTConfig *cfg, DdError *err) {
    if (!source_find(s, ORIGINAL_ROPE_PERIODS_NAME)) return 0;
    const int quarter = cfg->dim / cfg->num_heads / 4;
    TensorShape shape = {1, {quarter}};
    float periods[256];
    if (quarter > 256) return dd_fail(err, "model '%s': head dim too large for the RoPE check", cfg->name);
    if (source_read(s, ORIGINAL_ROPE_PERIODS_NAME, &shape, periods, err) != 0) return -1;
    for (int i = 0; i < quarter; i++) {
        double expected = pow(cfg->rope_base, 4.0 * i / (cfg->dim / cfg->num_heads));
        if (!(fabs(periods[i] - expected) <= 1e-2 * expected)) {
            double implied = quarter > 1 ? pow(periods[1], quarter) : NAN;
            return dd_fail(err, "%s: tensor '%s%s': expected RoPE periods of base %g (rope_base of model '%s'), found "
                           "period %d = %g instead of %g (base %g?)", s->set->path, s->prefix,
                           ORIGINAL_ROPE_PERIODS_NAME, cfg->rope_base, cfg->name, i, periods[i], expected, implied);
        }
    }
    return 0;
}

/* Tensors under the prefix (and, if given, starting with `within`) that
 * nothing read and that may not be skipped: an error naming them. */
static int check_leftovers(Source *s, const char *within, WeightNaming naming, const char *model, DdError *err) {
    size_t skip = strlen(s->prefix), used = 0;
    int count = 0;
    char list[3 * TENSOR_NAME_MAX + 16] = "";
    for (int i = 0; i < s->set->count; i++) {
        const char *name = s->set->entries[i].tensor->name;
        if (s->used[i] || !starts_with(name, s->prefix) || (within && !starts_with(name + skip, within))) continue;
        if (!within && foreign_tensor_skip_reason(name + skip, naming)) continue;
        if (tensor_shape_count(&s->set->entries[i].tensor->shape) == 0) continue;   /* carries nothing */
        if (count < 3 && used < sizeof list)
            used += (size_t)snprintf(list + used, sizeof list - used, "%s'%s'", count ? ", " : "", name);
        count++;
    }
    if (count == 0) return 0;
    return dd_fail(err, "%s: expected only tensors of model '%s', found %d more: %s%s (is the model YAML the right "
                   "one?)", s->set->path, model, count, list, count > 3 ? ", ..." : "");
}

int weights_read_backbone(const SafetensorsSet *set, const char *prefix, const ViTConfig *cfg, ViTParams *params,
                          WeightNaming *naming_found, DdError *err) {
    Source s;
    WeightNaming naming = WEIGHT_NAMING_HUGGING_FACE;
    int n = vit_tensor_count(cfg);
    ForeignTensor *layout = malloc((size_t)n * sizeof *layout);
    if (!layout) return dd_fail(err, "%s: out of memory", set->path);
    int status = source_begin(&s, set, err);
    if (status == 0) status = detect_naming(&s, prefix, &naming, err);
    if (status == 0) status = foreign_tensor_layout(cfg, naming, layout, err);
    for (int i = 0; i < n && status == 0; i++) {
        const ForeignTensor *t = &layout[i];
        float *target = params->memory + t->target.offset;
        for (int p = 0; p < t->piece_count && status == 0; p++) {
            const ForeignPiece *piece = &t->pieces[p];
            status = piece->absent ? read_absent_piece(&s, piece, target + piece->offset, err)
                                   : source_read(&s, piece->name, &piece->shape, target + piece->offset, err);
        }
        if (status == 0 && t->zero_count) memset(target + t->zero_offset, 0, t->zero_count * sizeof *target);
    }
    if (status == 0 && naming == WEIGHT_NAMING_ORIGINAL) status = check_rope_periods(&s, cfg, err);
    if (status == 0) status = check_leftovers(&s, NULL, naming, cfg->name, err);
    if (status == 0 && naming_found) *naming_found = naming;
    source_end(&s);
    free(layout);
    return status;
}

/* One head: every tensor of head_tensor_layout, by its DINOv3 name. */
static int read_head(Source *s, const char *head_name, const HeadConfig *head, int in_dim, float *out,
                     DdError *err) {
    int n = head_tensor_count(head);
    HeadTensorInfo *info = malloc((size_t)n * sizeof *info);
    if (!info) return dd_fail(err, "%s: out of memory", s->set->path);
    head_tensor_layout(head_name, head, in_dim, info);
    int status = 0;
    for (int i = 0; i < n && status == 0; i++)
        status = source_read(s, info[i].original_name, &info[i].shape, out + info[i].offset, err);
    free(info);
    return status;
}

int weights_read_heads(const SafetensorsSet *set, const char *prefix, const ViTConfig *cfg, float *dino, float *ibot,
                       DdError *err) {
    Source s;
    char other[TENSOR_NAME_MAX];
    if (source_begin(&s, set, err) != 0) return -1;
    int status = 0;
    if (prefix) {
        snprintf(s.prefix, sizeof s.prefix, "%s", prefix);
    } else {
        int found = find_prefix(set, "dino_head.last_layer.weight", s.prefix, other);
        if (found < 0)
            status = dd_fail(err, "%s: found heads under two prefixes, '%s' and '%s': choose one with --prefix",
                             set->path, s.prefix, other);
        else if (found == 0)
            status = dd_fail(err, "%s: expected a tensor 'dino_head.last_layer.weight' (with any prefix), found none "
                             "among its %d tensors", set->path, set->count);
    }
    if (status == 0) status = read_head(&s, "dino_head", &cfg->dino_head, cfg->dim, dino, err);
    if (status == 0) status = read_head(&s, "ibot_head", &cfg->ibot_head, cfg->dim, ibot, err);
    if (status == 0) status = check_leftovers(&s, "dino_head.", WEIGHT_NAMING_ORIGINAL, cfg->name, err);
    if (status == 0) status = check_leftovers(&s, "ibot_head.", WEIGHT_NAMING_ORIGINAL, cfg->name, err);
    source_end(&s);
    return status;
}

/* ---- the whole import --------------------------------------------------------------------- */

/* Adds a head's tensors from its buffer, in the project's names. */
static int add_head(TensorFileWriter *writer, const char *head_name, const HeadConfig *head, int in_dim,
                    const float *data, DdError *err) {
    int n = head_tensor_count(head);
    HeadTensorInfo *info = malloc((size_t)n * sizeof *info);
    if (!info) return dd_fail(err, "%s: out of memory", writer->path);
    head_tensor_layout(head_name, head, in_dim, info);
    int status = 0;
    for (int i = 0; i < n && status == 0; i++)
        status = tensor_writer_add(writer, info[i].name, &info[i].shape, data + info[i].offset, err);
    free(info);
    return status;
}

/* Host buffers of everything an import holds. */
typedef struct Imported {
    float *backbone, *dino, *ibot;
    ViTParams params;
    int has_heads;
} Imported;

static int write_output(const WeightsImport *job, const Imported *in, DdError *err) {
    const ViTConfig *cfg = job->model;
    TensorFileWriter writer;
    if (tensor_writer_open(&writer, job->output, err) != 0) return -1;
    const TensorShape scalar = {0, {0}};
    const float marker = in->has_heads ? 1.0f : 0.0f;
    int status = tensor_writer_add_vit_params(&writer, "", cfg, &in->params, err);
    if (status == 0 && in->has_heads) status = add_head(&writer, "dino_head", &cfg->dino_head, cfg->dim, in->dino, err);
    if (status == 0 && in->has_heads) status = add_head(&writer, "ibot_head", &cfg->ibot_head, cfg->dim, in->ibot, err);
    if (status == 0) status = tensor_writer_add(&writer, TEACHER_HEADS_PRESENT, &scalar, &marker, err);
    if (status != 0) {
        tensor_writer_abort(&writer);
        return -1;
    }
    return tensor_writer_commit(&writer, err);
}

int weights_import(const WeightsImport *job, DdError *err) {
    const ViTConfig *cfg = job->model;
    Imported in = {.has_heads = job->heads != NULL};
    SafetensorsSet source, heads;
    WeightNaming naming = WEIGHT_NAMING_HUGGING_FACE;
    int status = 0;
    size_t backbone_count = vit_tensor_layout(cfg, NULL);
    size_t dino_count = head_param_count(&cfg->dino_head, cfg->dim);
    size_t ibot_count = head_param_count(&cfg->ibot_head, cfg->dim);
    in.backbone = malloc(backbone_count * sizeof(float));
    if (in.has_heads) {
        in.dino = malloc(dino_count * sizeof(float));
        in.ibot = malloc(ibot_count * sizeof(float));
    }
    if (!in.backbone || (in.has_heads && (!in.dino || !in.ibot)))
        status = dd_fail(err, "model '%s': out of host memory for %zu parameters", cfg->name,
                         backbone_count + dino_count + ibot_count);
    if (status == 0) status = vit_params_view(&in.params, cfg, in.backbone, err);

    if (status == 0 && (status = safetensors_set_open(&source, job->source, err)) == 0) {
        status = weights_read_backbone(&source, job->prefix, cfg, &in.params, &naming, err);
        if (status == 0 && job->log)
            fprintf(job->log, "import: %s: %d tensors in %s names -> %zu parameters of model '%s'\n", job->source,
                    source.count, weight_naming_title(naming), vit_param_count(cfg), cfg->name);
        safetensors_set_close(&source);
    }
    if (status == 0 && in.has_heads && (status = safetensors_set_open(&heads, job->heads, err)) == 0) {
        status = weights_read_heads(&heads, NULL, cfg, in.dino, in.ibot, err);
        if (status == 0 && job->log)
            fprintf(job->log, "import: %s: DINO head (%zu parameters) and iBOT head (%zu parameters)\n", job->heads,
                    dino_count, ibot_count);
        safetensors_set_close(&heads);
    }
    if (status == 0) status = write_output(job, &in, err);
    if (status == 0 && job->log) {
        fprintf(job->log, "import: wrote %s\n", job->output);
        if (!in.has_heads)
            fprintf(job->log, "import: no heads file was given (--heads FILE): the teacher heads will be random; "
                              "%s records this as %s = 0\n", job->output, TEACHER_HEADS_PRESENT);
    }
    free(in.params.blocks);
    free(in.backbone);
    free(in.dino);
    free(in.ibot);
    return status;
}

int teacher_file_has_heads(const TensorFile *file, DdError *err) {
    if (!tensor_file_contains(file, TEACHER_HEADS_PRESENT))
        return tensor_file_contains(file, "dino_head.prototypes.weight") ? 1 : 0;
    const TensorShape scalar = {0, {0}};
    float marker = 0.0f;
    if (tensor_file_read(file, TEACHER_HEADS_PRESENT, &scalar, &marker, err) != 0) return -1;
    return marker != 0.0f;
}
