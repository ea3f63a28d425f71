/*
 * prometheus.c - the /metrics endpoint on libmicrohttpd (prometheus.h).
 */
#include "tools/prometheus.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct PrometheusEndpoint {
    struct MHD_Daemon *daemon;
    pthread_mutex_t lock;
    MetricsBoard board;      /* what scrapes see */
};

static enum MHD_Result answer(void *context, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **request_state) {
    (void)version, (void)upload_data, (void)upload_data_size, (void)request_state;
    PrometheusEndpoint *endpoint = context;
    if (strcmp(method, "GET") != 0) return MHD_NO;
    int found = strcmp(url, "/metrics") == 0 || strcmp(url, "/") == 0;
    char *text = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&text, &length);
    if (!out) return MHD_NO;
    if (found) {
        pthread_mutex_lock(&endpoint->lock);
        metrics_write_prometheus(out, &endpoint->board);
        pthread_mutex_unlock(&endpoint->lock);
    } else {
        fputs("not found: the metrics are at /metrics\n", out);
    }
    fclose(out);
    struct MHD_Response *response = MHD_create_response_from_buffer(length, text, MHD_RESPMEM_MUST_FREE);
    if (!response) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(response, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result result = MHD_queue_response(connection, found ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND, response);
    MHD_destroy_response(response);
    return result;
}

int prometheus_open(PrometheusEndpoint **endpoint, const char *bind_address, int port, DdError *err) {
    *endpoint = NULL;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind_address, &address.sin_addr) != 1)
        return dd_fail(err, "monitor.bind: expected an IPv4 address such as 127.0.0.1, found '%s'", bind_address);
    PrometheusEndpoint *e = calloc(1, sizeof *e);
    if (!e) return dd_fail(err, "out of memory for the metrics endpoint");
    pthread_mutex_init(&e->lock, NULL);
    e->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port, NULL, NULL,
                                 answer, e, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
                                 MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!e->daemon) {
        pthread_mutex_destroy(&e->lock);
        free(e);
        return dd_fail(err, "monitor: cannot serve metrics on %s:%d (is the port taken?)", bind_address, port);
    }
    *endpoint = e;
    return 0;
}

void prometheus_publish(PrometheusEndpoint *endpoint, const MetricsBoard *board) {
    pthread_mutex_lock(&endpoint->lock);
    endpoint->board = *board;
    pthread_mutex_unlock(&endpoint->lock);
}

void prometheus_close(PrometheusEndpoint *endpoint) {
    if (!endpoint) return;
    MHD_stop_daemon(endpoint->daemon);
    pthread_mutex_destroy(&endpoint->lock);
    free(endpoint);
}
