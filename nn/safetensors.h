/*
 * safetensors.h - reading and writing safetensors files, the weight format
 * of Hugging Face models.
 *
 * Format: an unsigned 64-bit little-endian header length N, N bytes of JSON
 * header, then the data section. The header is one object mapping each
 * tensor name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN,
 * END]} (offsets in bytes, relative to the data section), plus an optional
 * "__metadata__" object of strings. Data is little-endian, row-major.
 *
 * Reading maps the file (mmap) and checks the whole header before anything
 * is read: N no larger than SAFETENSORS_MAX_HEADER_BYTES and no larger than
 * the file; valid JSON (json.h); every dtype one of the format's; every
 * shape at most TENSOR_MAX_DIMS dims with a product that, times the dtype's
 * size, is exactly END - BEGIN; offsets inside the data section; tensors
 * neither overlapping nor leaving gaps (the format requires the data to be
 * covered exactly); names unique, non-empty, at most TENSOR_NAME_MAX-1
 * bytes. Reading a tensor converts F32, F16, BF16 and F64 to fp32.
 *
 * Writing stores fp32 tensors as F32, F16 or BF16, header padded with
 * spaces to a multiple of 8 bytes, metadata {"format": "pt"} (what
 * transformers expects), atomically: PATH.tmp.PID, fsync, rename.
 *
 * Every error names the file and, where one is involved, the tensor, what
 * was expected and what was found.
 */
#ifndef DD_NN_SAFETENSORS_H
#define DD_NN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/error.h"
#include "nn/tensor_file.h"

/* The limit of the reference implementation (safetensors' MAX_HEADER_SIZE). */
#define SAFETENSORS_MAX_HEADER_BYTES 100000000ull
enum { SAFETENSORS_MAX_TENSORS = 1 << 20 };

typedef enum SafetensorsDtype {
    SAFETENSORS_BOOL, SAFETENSORS_U8, SAFETENSORS_I8, SAFETENSORS_F8_E5M2, SAFETENSORS_F8_E4M3,
    SAFETENSORS_I16, SAFETENSORS_U16, SAFETENSORS_F16, SAFETENSORS_BF16,
    SAFETENSORS_I32, SAFETENSORS_U32, SAFETENSORS_F32,
    SAFETENSORS_F64, SAFETENSORS_I64, SAFETENSORS_U64,
    SAFETENSORS_DTYPE_COUNT,
} SafetensorsDtype;

/* "F32", ...; bytes per element. */
const char *safetensors_dtype_name(SafetensorsDtype dtype);
size_t safetensors_dtype_size(SafetensorsDtype dtype);

/* One tensor of a header. */
typedef struct SafetensorsTensor {
    const char *name;           /* into SafetensorsHeader.names */
    SafetensorsDtype dtype;
    TensorShape shape;
    uint64_t begin, end;        /* byte offsets in the data section */
} SafetensorsTensor;

/* A checked header: tensors sorted by name. */
typedef struct SafetensorsHeader {
    SafetensorsTensor *tensors;
    int count;
    char *names;                /* one allocation holding every name */
    uint64_t data_start;        /* 8 + N: where the data section starts in the file */
    uint64_t data_size;         /* bytes of the data section */
} SafetensorsHeader;

/* Checks and parses the header of a whole file held in bytes[size]
 * (nothing beyond size is read). path names the file in messages. No other
 * input is needed: this is the function the fuzzer drives. */
int safetensors_parse_header(SafetensorsHeader *header, const uint8_t *bytes, uint64_t size,
                             const char *path, DdError *err);
void safetensors_header_free(SafetensorsHeader *header);

/* ---- reading a file ------------------------------------------------------------- */

typedef struct SafetensorsFile {
    char path[TENSOR_FILE_PATH_MAX];
    const uint8_t *map;         /* the whole file, read-only */
    size_t map_size;
    SafetensorsHeader header;
} SafetensorsFile;

/* Maps path and checks its header. */
int safetensors_open(SafetensorsFile *file, const char *path, DdError *err);
void safetensors_close(SafetensorsFile *file);

/* The tensor called name, or NULL. */
const SafetensorsTensor *safetensors_find(const SafetensorsFile *file, const char *name);

/* Converts tensor (of file) to fp32 into out[product of its shape]. */
int safetensors_read_tensor(const SafetensorsFile *file, const SafetensorsTensor *tensor, float *out,
                            DdError *err);

/* Reads tensor name into out after checking its shape is *expected. */
int safetensors_read(const SafetensorsFile *file, const char *name, const TensorShape *expected,
                     float *out, DdError *err);

/* ---- writing -------------------------------------------------------------------- */

/* Writes count fp32 tensors (names unique) as dtype F32, F16 or BF16. */
int safetensors_write(const char *path, const NamedTensor *tensors, int count, SafetensorsDtype dtype,
                      DdError *err);

#endif
