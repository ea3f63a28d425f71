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
    char original[DD_ERROR_MESSAGE_MAX];
    memcpy(original, err->message, sizeof original);
    va_list args;
    va_start(args, format);
    int n = vsnprintf(err->message, sizeof err->message, format, args);
    va_end(args);
    size_t used = n < 0 ? 0 : (size_t)n < sizeof err->message ? (size_t)n : sizeof err->message - 1;
    snprintf(err->message + used, sizeof err->message - used, ": %.*s",
             (int)(sizeof err->message - used), original);
    return -1;
}
