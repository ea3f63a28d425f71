/*
 * hdf5_util.c - libhdf5 helpers for the shard writer and reader (see
 * hdf5_util.h).
 */
#include "data/hdf5_util.h"

#include <stdio.h>
#include <string.h>

int data_hdf5_has_dataset(hid_t file, const char *name) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return 0;
    }
    H5O_info_t info;
    int ok = H5Oget_info_by_name(file, name, &info, H5P_DEFAULT) >= 0 && info.type == H5O_TYPE_DATASET;
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

int64_t data_hdf5_length(hid_t file, const char *name) {
    if (!data_hdf5_has_dataset(file, name)) return -1;
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t space = H5Dget_space(d);
    hsize_t dims[1] = {0};
    int64_t length = space >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
                             H5Sget_simple_extent_dims(space, dims, NULL) == 1
                         ? (int64_t)dims[0]
                         : -1;
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    H5Eclear2(H5E_DEFAULT);
    return length;
}

int data_hdf5_read_all(hid_t file, const char *name, hid_t memory_type, int64_t length, void *out,
                       const char *path, DdError *err) {
    if (data_hdf5_length(file, name) != length)
        return dd_fail(err, "%s: expected a 1-D dataset '%s' of %lld values", path, name, (long long)length);
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    herr_t status = d >= 0 && length > 0 ? H5Dread(d, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) : 0;
    if (d >= 0) H5Dclose(d);
    if (d < 0 || status < 0) {
        char reason[256];
        return dd_fail(err, "%s: cannot read dataset '%s' (%s)", path, name, hdf5_reason(reason, sizeof reason));
    }
    return 0;
}

int data_hdf5_write_1d(hid_t file, const char *name, hid_t file_type, hid_t memory_type, const void *data,
                       uint64_t length, uint64_t chunk, const char *path, DdError *err) {
    hsize_t dims[1] = {length}, chunk_dims[1] = {chunk < length ? chunk : length};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t properties = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk && length > 0) H5Pset_chunk(properties, 1, chunk_dims);
    hid_t d = space >= 0 ? H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, properties, H5P_DEFAULT) : -1;
    herr_t status = d >= 0 && length > 0 ? H5Dwrite(d, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0;
    if (d >= 0) H5Dclose(d);
    H5Pclose(properties);
    if (space >= 0) H5Sclose(space);
    if (d < 0 || status < 0) {
        char reason[256];
        return dd_fail(err, "%s: cannot write dataset '%s' (%s)", path, name, hdf5_reason(reason, sizeof reason));
    }
    return 0;
}

int data_hdf5_set_u64(hid_t file, const char *name, uint64_t value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, name, H5T_STD_U64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t status = a >= 0 ? H5Awrite(a, H5T_NATIVE_UINT64, &value) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return status < 0 ? -1 : 0;
}

int data_hdf5_get_u64(hid_t file, const char *name, uint64_t *value) {
    if (H5Aexists(file, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return -1;
    }
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    herr_t status = a >= 0 ? H5Aread(a, H5T_NATIVE_UINT64, value) : -1;
    if (a >= 0) H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    return status < 0 ? -1 : 0;
}

int data_hdf5_set_text(hid_t file, const char *name, const char *text) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(text) + 1);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t status = a >= 0 ? H5Awrite(a, type, text) : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return status < 0 ? -1 : 0;
}

int data_hdf5_get_text(hid_t file, const char *name, char *text, size_t cap) {
    text[0] = 0;
    if (H5Aexists(file, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return -1;
    }
    hid_t a = H5Aopen(file, name, H5P_DEFAULT);
    hid_t type = a >= 0 ? H5Aget_type(a) : -1;
    int status = -1;
    if (type >= 0 && H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
        size_t size = H5Tget_size(type);
        char buffer[1024];
        if (size > 0 && size <= sizeof buffer && H5Aread(a, type, buffer) >= 0) {
            snprintf(text, cap, "%.*s", (int)size, buffer);
            status = 0;
        }
    }
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    H5Eclear2(H5E_DEFAULT);
    return status;
}
