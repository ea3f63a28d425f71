/*
 * prometheus.h - the run's Prometheus endpoint: GET /metrics answers the
 * text exposition of the newest metrics board (metrics.h). Served by
 * libmicrohttpd's own thread; rank 0 publishes a copy of its board after
 * every record, under a mutex, so a scrape never sees half a record.
 */
#ifndef DD_TOOLS_PROMETHEUS_H
#define DD_TOOLS_PROMETHEUS_H

#include "nn/error.h"
#include "tools/metrics.h"

typedef struct PrometheusEndpoint PrometheusEndpoint;

/* Listens on bind_address:port (an IPv4 address, 127.0.0.1 unless the
 * config says otherwise). Fails when the address is not one, or the port is
 * taken. */
int prometheus_open(PrometheusEndpoint **endpoint, const char *bind_address, int port, DdError *err);
/* Replaces what scrapes see with a copy of board. */
void prometheus_publish(PrometheusEndpoint *endpoint, const MetricsBoard *board);
/* Stops the thread and frees everything; NULL is fine. */
void prometheus_close(PrometheusEndpoint *endpoint);

#endif
