'use strict';

// Cluster mode (NODE_WORKERS > 1): the primary process forks that many workers, each the
// ordinary server of server.js with its share of the pool (config.poolShares), all on one
// listening socket that node:cluster shares (round-robin: the primary accepts, the workers
// serve). The primary prints the one `listening on` line once every worker listens, restarts a
// worker that dies (unless stopping; a replacement that cannot start is retried a few times,
// then everything stops with exit 1), answers the workers' /metrics with the sum over all of
// them (prom-client's AggregatorRegistry), and on SIGTERM/SIGINT/stdin EOF has every worker
// drain and exits once they all have. The primary never serves a request and never opens a
// database connection: the pool total stays the single process's.
//
// Workers learn their slot (index into config.poolShares) from APIBENCH_WORKER_SLOT; a worker
// whose primary vanishes (SIGKILL) exits at once — node:cluster does that when the IPC channel
// closes — so no worker outlives its primary.

const cluster = require('node:cluster');
const net = require('node:net');
const { AggregatorRegistry } = require('prom-client');
const { announceListening, onStopRequest, fail } = require('./lifecycle');

const WORKER_SLOT_ENV = 'APIBENCH_WORKER_SLOT';
const MESSAGE = {
  listening: 'apibench:listening', // worker → primary: {address} (server.address())
  metricsRequest: 'apibench:metrics-request', // worker → primary: {id}
  metricsResponse: 'apibench:metrics-response', // primary → worker: {id, body} or {id, error}
};
// A replacement that exits before it listens is retried after 100 ms, 200 ms, … this many times
// in a row; then the primary gives up (a database that stays away, a port taken) and exits 1.
const MAX_FAILED_RESTARTS = 5;
// prom-client gives up on a worker that does not answer after 5 s; the asking worker a bit later.
const METRICS_PATIENCE_MS = 6_000;

// This process's place in the cluster: {workers, slot, pid} in a worker, null otherwise.
function workerIdentity(config) {
  if (!cluster.isWorker) return null;
  const slot = Number(process.env[WORKER_SLOT_ENV]);
  if (!Number.isInteger(slot) || slot < 0 || slot >= config.poolShares.length) {
    throw new Error(`${WORKER_SLOT_ENV}=${process.env[WORKER_SLOT_ENV]}: not a worker slot of ${config.poolShares.length}`);
  }
  return { workers: config.nodeWorkers, slot, pid: process.pid };
}

// In a worker: tell the primary where the server listens.
function reportListening(address) {
  process.send({ type: MESSAGE.listening, address });
}

// In a worker: make `registry` the one the primary aggregates, and return render() for
// /metrics, which asks the primary for the sum over every worker (this one included): a scrape
// lands on any one worker, and a before/after difference (the loadgen's GC pause time) must
// not depend on which.
function aggregatedMetrics(registry) {
  new AggregatorRegistry(); // installs the worker's answer to the primary's collection requests
  AggregatorRegistry.setRegistries([registry]);
  const pending = new Map();
  let nextId = 0;
  process.on('message', (message) => {
    if (message?.type !== MESSAGE.metricsResponse) return;
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    clearTimeout(waiter.timer);
    if (message.error !== undefined) waiter.reject(new Error(`aggregating cluster metrics: ${message.error}`));
    else waiter.resolve(message.body);
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`the cluster primary did not answer a metrics request within ${METRICS_PATIENCE_MS} ms`));
      }, METRICS_PATIENCE_MS);
      pending.set(id, { resolve, reject, timer });
      process.send({ type: MESSAGE.metricsRequest, id });
    }).then((body) => ({ contentType: registry.contentType, body }));
}

// A port free on `host` now. node:cluster shares a socket between workers that listen with the
// same arguments, and with port 0 a replacement worker's `listen(PORT=the bound port)` would
// not be those arguments (EADDRINUSE), while a replacement listening on 0 again gets a new
// random port once every worker has died. So with PORT=0 the primary picks the port first and
// gives every worker the same one, as apibench does for its Node targets — another process
// could take it in the moment between (then the workers fail to listen: exit 1).
function freePort(host) {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, host, () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

// The primary. `stopPatienceMs`: how long the workers get to drain before they are killed.
async function runPrimary(config, logger, { stopPatienceMs }) {
  const workerCount = config.nodeWorkers;
  const { version } = require('../package.json');
  // Workers keep stdout/stderr (logs, error lines) but not stdin: the stdin lifeline is the
  // primary's, which then stops them.
  cluster.setupPrimary({ stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });

  const live = new Map(); // worker → {slot, listening}
  const failedRestarts = new Array(workerCount).fill(0);
  const restartTimers = new Set();
  let port = config.port;
  if (port === 0) {
    try {
      port = await freePort(config.host);
    } catch (err) {
      fail(`cannot listen on ${config.host}:0: ${err.message}`);
    }
  }
  let announced = false;
  let stopping = null; // {exitCode} once stopping
  let workerFailed = false;

  function fork(slot) {
    const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot), PORT: String(port) });
    live.set(worker, { slot, listening: false });
  }

  function stop(reason, exitCode) {
    if (stopping) return;
    stopping = { exitCode };
    for (const t of restartTimers) clearTimeout(t);
    restartTimers.clear();
    logger.info({ reason, workers: live.size }, 'shutting down: every worker finishes its in-flight requests');
    // A group signal (apibench's killpg) has reached them already; a second SIGTERM is ignored.
    for (const worker of live.keys()) worker.process.kill('SIGTERM');
    const force = setTimeout(() => {
      logger.warn({ workers: live.size, patience_ms: stopPatienceMs }, 'workers did not stop in time: killing them');
      for (const worker of live.keys()) worker.process.kill('SIGKILL');
      finish(1);
    }, stopPatienceMs);
    force.unref();
    exitWhenAllStopped();
  }

  function finish(code) {
    logger.info({ code }, 'stopped');
    logger.flush?.();
    process.exit(code);
  }

  function exitWhenAllStopped() {
    if (stopping && live.size === 0) finish(stopping.exitCode || (workerFailed ? 1 : 0));
  }

  const aggregator = new AggregatorRegistry();
  cluster.on('message', (worker, message) => {
    const state = live.get(worker);
    if (message?.type === MESSAGE.listening && state) {
      state.listening = true;
      failedRestarts[state.slot] = 0;
      if (!announced && [...live.values()].filter((s) => s.listening).length === workerCount) {
        announced = true;
        logger.info(
          {
            host: message.address.address,
            port: message.address.port,
            workers: workerCount,
            pool_shares: config.poolShares,
            knobs: config.knobs,
            version,
          },
          'api started (cluster)',
        );
        announceListening(message.address);
      }
    } else if (message?.type === MESSAGE.metricsRequest) {
      const reply = (fields) => worker.isConnected() && worker.send({ type: MESSAGE.metricsResponse, id: message.id, ...fields });
      aggregator.clusterMetrics().then(
        (body) => reply({ body }),
        (err) => reply({ error: err.message }),
      );
    }
  });

  cluster.on('exit', (worker, code, signal) => {
    const state = live.get(worker);
    live.delete(worker);
    if (!state) return;
    const { slot, listening } = state;
    const workerPid = worker.process.pid;
    if (stopping) {
      if (code !== 0 && code !== null) workerFailed = true;
      exitWhenAllStopped();
      return;
    }
    if (!announced) {
      // A worker that cannot start (database unreachable, port taken) fails the start: the
      // error is its own line on stderr already. No restart loop.
      const how = signal ?? `code ${code}`;
      process.stderr.write(`error: cluster worker ${slot} (pid ${workerPid}) exited (${how}) before it was listening\n`);
      stop('a worker failed to start', 1);
      return;
    }
    if (!listening && ++failedRestarts[slot] >= MAX_FAILED_RESTARTS) {
      logger.error(
        { slot, worker_pid: workerPid, code, signal, attempts: failedRestarts[slot] },
        'worker could not be restarted: giving up',
      );
      process.stderr.write(`error: cluster worker ${slot} failed to restart ${failedRestarts[slot]} times in a row\n`);
      stop('a worker could not be restarted', 1);
      return;
    }
    const delayMs = listening ? 0 : 100 * 2 ** (failedRestarts[slot] - 1);
    logger.warn({ slot, worker_pid: workerPid, code, signal, restart_in_ms: delayMs }, 'worker exited: restarting it');
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      fork(slot);
    }, delayMs);
    restartTimers.add(timer);
  });

  // Including the end of the harness's stdin lifeline: the primary stops, and every worker with it.
  onStopRequest((reason) => stop(reason, 0));

  for (let slot = 0; slot < workerCount; slot++) fork(slot);
}

module.exports = { runPrimary, workerIdentity, reportListening, aggregatedMetrics };
