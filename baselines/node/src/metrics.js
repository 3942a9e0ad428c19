'use strict';

// Prometheus metrics with the names of docs/CONTRACT.md, plus prom-client's default Node.js
// metrics (event-loop lag, heap, RSS, and `nodejs_gc_duration_seconds`, the GC pause histogram
// the reports show). Disabled (API_METRICS=false) → no registry, nothing recorded, /metrics 404.
// In a cluster worker, render() returns the sum over every worker (cluster.js): counters,
// histograms and the pool gauges add up; prom-client's own rules for the rest (e.g. event-loop
// lag averaged, process start time left out). The primary's own process is not in it.

const client = require('prom-client');
const { aggregatedMetrics } = require('./cluster');

// Request latencies are in seconds; these buckets reach from 0.5 ms to 10 s.
const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

function createMetrics(pool, { clusterWorker = false } = {}) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });

  const requests = new client.Counter({
    name: 'api_requests_total',
    help: 'HTTP requests answered, by route template, method and status code',
    labelNames: ['endpoint', 'method', 'status'],
    registers: [registry],
  });
  const duration = new client.Histogram({
    name: 'api_request_duration_seconds',
    help: 'Time from receiving a request to finishing its response, by route template and method',
    labelNames: ['endpoint', 'method'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  new client.Gauge({
    name: 'api_db_pool_size',
    help: 'Connections currently open in the database pool (idle and in use)',
    registers: [registry],
    collect() {
      this.set(pool ? pool.totalCount : 0);
    },
  });
  new client.Gauge({
    name: 'api_db_pool_idle',
    help: 'Idle connections in the database pool',
    registers: [registry],
    collect() {
      this.set(pool ? pool.idleCount : 0);
    },
  });

  const render = clusterWorker
    ? aggregatedMetrics(registry)
    : async () => ({ contentType: registry.contentType, body: await registry.metrics() });

  return {
    registry,
    observe(endpoint, method, status, seconds) {
      requests.inc({ endpoint, method, status: String(status) });
      duration.observe({ endpoint, method }, seconds);
    },
    render,
  };
}

module.exports = { createMetrics, DURATION_BUCKETS };
