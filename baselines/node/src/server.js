'use strict';

// Entry point: config from the environment, pool (pre-warmed to pool_min), listen, and a
// graceful shutdown on SIGTERM/SIGINT. Prints exactly one `listening on http://HOST:PORT` line
// to stderr when ready (apibench waits for it); logs go to stderr too (as the Rust API).

const http = require('node:http');
const { loadConfig, ConfigError } = require('./config');
const { createLogger } = require('./logger');
const { createPool, prewarm } = require('./db');
const { createApp } = require('./app');

const SHUTDOWN_GRACE_MS = 10_000;
// While draining, idle keep-alive connections are closed this often: node:http's server.close()
// closes the connections idle at that moment only, so one whose in-flight response finishes
// later would stay open for keepAliveTimeout (75 s) and hold the exit until the grace is over.
const DRAIN_SWEEP_MS = 50;
// Closing the pool waits for every client to end; a database that answers nothing (paused)
// would keep that — and the exit — waiting.
const POOL_END_PATIENCE_MS = 5_000;

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

function urlHost(host) {
  return host.includes(':') ? `[${host}]` : host;
}

async function main() {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
  const logger = createLogger(config.knobs);
  const pool = createPool(config);
  // An idle client losing its connection (e.g. the database restarts) must not crash us.
  pool.on('error', (err) => logger.warn({ err }, 'idle database connection failed'));

  try {
    await prewarm(pool, Math.max(config.knobs.pool_min, 1));
  } catch (err) {
    await pool.end().catch(() => {});
    fail(`cannot connect to the database (DATABASE_URL): ${err.message}`);
  }

  const app = createApp({ config, pool, logger });
  const server = http.createServer(app);
  server.keepAliveTimeout = 75_000; // keep load generators' connections open between requests
  server.headersTimeout = 80_000;

  server.on('error', (err) => {
    pool.end().catch(() => {});
    fail(`cannot listen on ${config.host}:${config.port}: ${err.message}`);
  });

  server.listen(config.port, config.host, () => {
    const addr = server.address();
    logger.info({ host: addr.address, port: addr.port, knobs: config.knobs, version: require('../package.json').version }, 'api started');
    process.stderr.write(`listening on http://${urlHost(addr.address)}:${addr.port}\n`);
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
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // A harness that cannot promise to signal us (a test process whose statics never drop) keeps
  // our stdin open as a lifeline: when it dies, the pipe closes and we stop like on SIGTERM.
  if (process.env.API_EXIT_ON_STDIN_EOF === 'true') {
    process.stdin.on('end', () => shutdown('stdin closed'));
    process.stdin.on('error', () => shutdown('stdin closed'));
    process.stdin.resume();
  }
}

process.on('unhandledRejection', (err) => {
  process.stderr.write(`unhandled rejection: ${err && err.stack ? err.stack : err}\n`);
});

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));
