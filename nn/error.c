/*
 * error.c - formatting of DdError messages (see error.h).
 */
#include "nn/error.h"

#include <stdio.h>
#include <string.h>

int dd_vfail(DdError *err, const char *format, va_list args) {
    if (err) vsnprintf(err->message, sizeof err->message, format, args);
    return -1;
}

int dd_fail(DdError *err, const char *format, ...) {
    va_list args;
    va_start(args, format);
    dd_vfail(err, format, args);
    va_end(args);
    return -1;
}

int dd_fail_context(DdError *err, const char *format, ...) {
    if (!err) return -1;
    char prefix[DD_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(prefix, sizeof prefix, format, args);
    va_end(args);
    char original[DD_ERROR_MESSAGE_MAX];
    memcpy(original, err->message, sizeof original);
    snprintf(err->message, sizeof err->message, "%s: %s", prefix, original);
    return -1;
}
