'use strict';

// Entry point: config from the environment, pool (pre-warmed to pool_min), listen, and a
// graceful shutdown on SIGTERM/SIGINT. Prints exactly one `listening on http://HOST:PORT` line
// to stderr when ready (apibench waits for it); logs go to stderr too (as the Rust API).
// With NODE_WORKERS > 1 this process becomes the cluster primary (cluster.js) and each worker
// runs the same serve() below with its share of the pool.

const http = require('node:http');
const { loadConfig, ConfigError } = require('./config');
const { createLogger } = require('./logger');
const { fail, announceListening, onStopRequest } = require('./lifecycle');
const { runPrimary, workerIdentity, reportListening } = require('./cluster');

const SHUTDOWN_GRACE_MS = 10_000;
// While draining, idle keep-alive connections are closed this often: node:http's server.close()
// closes the connections idle at that moment only, so one whose in-flight response finishes
// later would stay open for keepAliveTimeout (75 s) and hold the exit until the grace is over.
const DRAIN_SWEEP_MS = 50;
// Closing the pool waits for every client to end; a database that answers nothing (paused)
// would keep that — and the exit — waiting.
const POOL_END_PATIENCE_MS = 5_000;
// What a cluster primary gives its workers to drain before it kills them: a worker's own
// bound (grace + pool patience) and a margin for its start and exit.
const WORKERS_STOP_PATIENCE_MS = SHUTDOWN_GRACE_MS + POOL_END_PATIENCE_MS + 2_000;

async function main() {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const logger = createLogger(config.knobs);
  const worker = workerIdentity(config);
  if (config.nodeWorkers > 1 && !worker) {
    await runPrimary(config, logger, { stopPatienceMs: WORKERS_STOP_PATIENCE_MS });
    return;
  }
  await serve(config, logger, worker);
}

// The server itself: the single process, or one cluster worker (`worker`: {workers, slot, pid})
// with its slot's share of the pool.
async function serve(config, logger, worker) {
  // Required here, not at the top: a cluster primary never serves, and Express, pg and argon2
  // would add ~14 MB to its RSS (which the harness counts with its workers').
  const { createPool, prewarm } = require('./db');
  const { createApp } = require('./app');
  const share = config.poolShares[worker ? worker.slot : 0];
  const pool = createPool({ ...config, knobs: { ...config.knobs, ...share } });
  // An idle client losing its connection (e.g. the database restarts) must not crash us.
  pool.on('error', (err) => logger.warn({ err }, 'idle database connection failed'));

  try {
    await prewarm(pool, Math.max(share.pool_min, 1));
  } catch (err) {
    await pool.end().catch(() => {});
    fail(`cannot connect to the database (DATABASE_URL): ${err.message}`);
  }

  // A worker says who it is in /healthz (`cluster`), and its /metrics are the cluster's.
  const clusterInfo = worker && { ...worker, ...share };
  const app = createApp({ config, pool, logger, clusterInfo });
  const server = http.createServer(app);
  server.keepAliveTimeout = 75_000; // keep load generators' connections open between requests
  server.headersTimeout = 80_000;

  server.on('error', (err) => {
    pool.end().catch(() => {});
    fail(`cannot listen on ${config.host}:${config.port}: ${err.message}`);
  });

  server.listen(config.port, config.host, () => {
    const addr = server.address();
    if (worker) {
      logger.info({ port: addr.port, slot: worker.slot, workers: worker.workers, ...share }, 'cluster worker started');
      reportListening(addr); // the primary announces once every worker listens
      return;
    }
    logger.info({ host: addr.address, port: addr.port, knobs: config.knobs, version: require('../package.json').version }, 'api started');
    announceListening(addr);
  });

  let shuttingDown = false;
  const shutdown = (signal) => {
    if (shuttingDown) return;
    shuttingDown = true;
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    const force = setTimeout(() => {
      logger.warn('shutdown grace period over: closing remaining connections');
      server.closeAllConnections();
    }, SHUTDOWN_GRACE_MS);
    force.unref();
    const sweep = setInterval(() => server.closeIdleConnections(), DRAIN_SWEEP_MS);
    sweep.unref();
    // Stops accepting; idle keep-alive connections are closed, busy ones after their response.
    server.close(async () => {
      clearTimeout(force);
      clearInterval(sweep);
      let patience;
      const gaveUp = new Promise((resolve) => {
        patience = setTimeout(() => resolve(true), POOL_END_PATIENCE_MS);
      });
      try {
        if (await Promise.race([pool.end().then(() => false), gaveUp])) {
          logger.warn('the database pool did not close in time; stopping without it');
        }
      } catch (err) {
        logger.warn({ err }, 'closing the pool failed');
      }
      clearTimeout(patience);
      logger.info('stopped');
      logger.flush?.();
      process.exit(0);
    });
    server.closeIdleConnections();
  };
  // A worker's SIGTERM comes from the group's (apibench's killpg) or from its primary (signalled
  // alone, or its stdin closed); the stdin lifeline is the primary's.
  onStopRequest(shutdown, { stdinLifeline: !worker });
}

process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${err && err.stack ? err.stack : err}\n`);
});

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));
