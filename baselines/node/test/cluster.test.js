'use strict';

// Cluster mode (NODE_WORKERS): how the pool is split, how the worker count is read, and the
// cluster as a process — N workers behind one socket, /metrics summed over them, a dead worker
// replaced, and no worker outliving its primary (stdin EOF, SIGKILL). The SIGTERM drain under
// the cluster and the give-up when replacements cannot reach the database are in
// faults.test.js, beside the single process's fault tests.

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const { loadConfig, splitPool, ConfigError } = require('../src/config');
const { startServer, request } = require('../test-support/helpers');

const DB = process.env.DATABASE_URL;
const skip = DB ? false : 'DATABASE_URL is not set: skipping the cluster process tests that need PostgreSQL';
const URL = 'postgres://u@127.0.0.1:5432/db';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const sum = (xs) => xs.reduce((a, b) => a + b, 0);

test('splitPool: the totals split as evenly as integers allow, never above them, each worker >= 1 connection', () => {
  const shares = (max, min, n) => splitPool({ pool_max: max, pool_min: min }, n);
  assert.deepEqual(shares(10, 4, 2), [
    { pool_max: 5, pool_min: 2 },
    { pool_max: 5, pool_min: 2 },
  ]);
  assert.deepEqual(
    shares(10, 2, 3).map((s) => s.pool_max),
    [4, 3, 3],
  );
  assert.deepEqual(
    shares(10, 2, 3).map((s) => s.pool_min),
    [1, 1, 0],
  );
  assert.deepEqual(shares(2, 0, 2), [
    { pool_max: 1, pool_min: 0 },
    { pool_max: 1, pool_min: 0 },
  ]);
  for (let n = 1; n <= 8; n++) {
    for (let max = n; max <= 40; max++) {
      for (let min = 0; min <= max; min++) {
        const s = shares(max, min, n);
        assert.equal(s.length, n);
        assert.equal(sum(s.map((x) => x.pool_max)), max, `max ${max} over ${n}`);
        assert.equal(sum(s.map((x) => x.pool_min)), min, `min ${min} over ${n}`);
        for (const x of s) {
          assert.ok(x.pool_max >= 1 && x.pool_min <= x.pool_max, `${max}/${min} over ${n}: ${JSON.stringify(s)}`);
          assert.ok(x.pool_max - s[n - 1].pool_max <= 1, 'uneven split');
        }
      }
    }
  }
});

test('splitPool: fewer connections than workers is refused, not clamped', () => {
  assert.throws(
    () => splitPool({ pool_max: 1, pool_min: 1 }, 2),
    (e) => e instanceof ConfigError && /NODE_WORKERS: 2 workers need API_POOL_MAX >= 2.*got API_POOL_MAX=1/.test(e.message),
  );
  assert.throws(
    () => loadConfig({ DATABASE_URL: URL, API_NODE_WORKERS: '3', API_POOL_MAX: '2', API_POOL_MIN: '0' }),
    /API_NODE_WORKERS: 3 workers need API_POOL_MAX >= 3/,
  );
});

test('NODE_WORKERS / API_NODE_WORKERS: default 1, 0 and auto = available CPUs, the API_ one wins, bad values named', () => {
  const load = (env) => loadConfig({ DATABASE_URL: URL, ...env }, { availableParallelism: () => 3 });
  assert.equal(load({}).nodeWorkers, 1);
  assert.deepEqual(load({}).poolShares, [{ pool_max: 50, pool_min: 10 }]);
  assert.equal(load({ NODE_WORKERS: '2' }).nodeWorkers, 2);
  assert.equal(load({ NODE_WORKERS: 'auto' }).nodeWorkers, 3);
  assert.equal(load({ NODE_WORKERS: '0' }).nodeWorkers, 3);
  assert.equal(load({ NODE_WORKERS: '00' }).nodeWorkers, 3);
  assert.equal(load({ NODE_WORKERS: '2', API_NODE_WORKERS: '4' }).nodeWorkers, 4);
  assert.equal(load({ NODE_WORKERS: 'x', API_NODE_WORKERS: '1' }).nodeWorkers, 1);
  assert.equal(load({ NODE_WORKERS: '' }).nodeWorkers, 1);
  assert.deepEqual(
    load({ NODE_WORKERS: '3' }).poolShares.map((s) => s.pool_max),
    [17, 17, 16],
  );
  for (const [env, name] of [
    [{ NODE_WORKERS: 'many' }, 'NODE_WORKERS="many"'],
    [{ NODE_WORKERS: '-1' }, 'NODE_WORKERS="-1"'],
    [{ NODE_WORKERS: '1.5' }, 'NODE_WORKERS="1.5"'],
    [{ NODE_WORKERS: '1025' }, 'NODE_WORKERS="1025"'],
    [{ NODE_WORKERS: '2', API_NODE_WORKERS: 'Auto' }, 'API_NODE_WORKERS="Auto"'],
  ]) {
    assert.throws(() => load(env), (e) => e instanceof ConfigError && e.message.startsWith(`${name}: expected auto or an integer`), name);
  }
});

const taskset = spawnSync('taskset', ['--version']).status === 0;
test('NODE_WORKERS=auto counts the CPUs of the affinity mask (taskset), not the machine', { skip: taskset ? false : 'taskset is not installed' }, () => {
  const config = path.join(__dirname, '..', 'src', 'config.js');
  const script = `process.stdout.write(String(require(${JSON.stringify(config)}).loadConfig({ DATABASE_URL: '${URL}', NODE_WORKERS: 'auto' }).nodeWorkers))`;
  const pinned = spawnSync('taskset', ['-c', '0', process.execPath, '-e', script], { encoding: 'utf8' });
  assert.equal(pinned.status, 0, pinned.stderr);
  assert.equal(pinned.stdout, '1');
});

test('cluster start-up errors exit 1 at once: a refused pool split, an unreachable database (no restart loop)', async () => {
  const split = startServer({ DATABASE_URL: URL, NODE_WORKERS: '2', API_POOL_MAX: '1', API_POOL_MIN: '1' });
  const { exit: splitExit } = await split.ready;
  assert.equal(splitExit?.code, 1);
  assert.match(split.output().stderr, /NODE_WORKERS: 2 workers need API_POOL_MAX >= 2/);

  const started = Date.now();
  const s = startServer({ DATABASE_URL: 'postgres://x@127.0.0.1:1/x', NODE_WORKERS: '2', API_POOL_ACQUIRE_TIMEOUT_MS: '500', API_LOG_FORMAT: 'off' });
  const { exit } = await s.ready;
  assert.equal(exit?.code, 1, s.output().stderr);
  const { stderr } = s.output();
  assert.match(stderr, /cannot connect to the database/);
  assert.match(stderr, /cluster worker \d \(pid \d+\) exited \(code 1\) before it was listening/);
  assert.doesNotMatch(stderr, /listening on /);
  // Both workers tried once: two connection errors, not a stream of restarts.
  assert.ok(stderr.match(/cannot connect to the database/g).length <= 2, stderr);
  assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms to give up`);
});

// GET over a connection of its own, so that node:cluster hands each to the next worker.
const get = (base, urlPath) => request(base, 'GET', urlPath, { agent: false });

// `/healthz` until every one of `workers` slots answered: {slot → cluster info}; `.requests`:
// how many it sent.
async function workersBySlot(base, workers, patienceMs = 10_000) {
  const seen = new Map();
  seen.requests = 0;
  const started = Date.now();
  while (seen.size < workers) {
    seen.requests++;
    const res = await get(base, '/healthz');
    assert.equal(res.status, 200, res.text);
    assert.ok(res.json.cluster, `no cluster in /healthz: ${res.text}`);
    seen.set(res.json.cluster.slot, res.json.cluster);
    assert.ok(Date.now() - started < patienceMs, `only slots ${[...seen.keys()]} answered within ${patienceMs} ms`);
  }
  return seen;
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code !== 'ESRCH';
  }
};

async function untilGone(pids, patienceMs) {
  const started = Date.now();
  while (pids.some(alive)) {
    assert.ok(Date.now() - started < patienceMs, `still running after ${patienceMs} ms: ${pids.filter(alive)}`);
    await sleep(20);
  }
}

// The metric's samples (name{labels} value) summed.
function metricTotal(text, name, labelsPattern = '') {
  const re = new RegExp(`^${name}(\\{[^}]*\\})? ([0-9.e+-]+)$`, 'gm');
  let total = 0;
  let found = false;
  for (const m of text.matchAll(re)) {
    if (labelsPattern && !(m[1] || '').includes(labelsPattern)) continue;
    total += Number(m[2]);
    found = true;
  }
  return found ? total : undefined;
}

async function startCluster(t, env, options) {
  const s = startServer(
    { DATABASE_URL: DB, PORT: '0', NODE_WORKERS: '2', API_POOL_MAX: '10', API_POOL_MIN: '4', API_LOG_FORMAT: 'off', ...env },
    options,
  );
  t.after(() => s.child.kill('SIGKILL'));
  const { url, exit } = await s.ready;
  assert.ok(url, `cluster did not start: ${JSON.stringify(exit)} ${s.output().stderr}`);
  return { ...s, base: url };
}

test('NODE_WORKERS=2: two workers on one port, the pool split 5+5, one listening line, /metrics summed over both', { skip }, async (t) => {
  const s = await startCluster(t, {});
  const workers = await workersBySlot(s.base, 2);
  const pids = [...workers.values()].map((w) => w.pid);
  assert.equal(new Set(pids).size, 2, `pids ${pids}`);
  assert.ok(!pids.includes(s.child.pid), 'the primary served a request');
  for (const w of workers.values()) {
    assert.deepEqual({ workers: w.workers, pool_max: w.pool_max, pool_min: w.pool_min }, { workers: 2, pool_max: 5, pool_min: 2 });
  }

  // Requests spread over both workers; every scrape, whichever worker takes it, counts all.
  const HITS = 12;
  const servedBy = new Set();
  for (let i = 0; i < HITS; i++) servedBy.add((await get(s.base, '/healthz')).json.cluster.pid);
  assert.equal(servedBy.size, 2, 'the requests did not reach both workers');
  const healthzSent = workers.requests + HITS;
  for (let scrape = 0; scrape < 4; scrape++) {
    const res = await get(s.base, '/metrics');
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers['content-type'], /^text\/plain/);
    assert.equal(metricTotal(res.text, 'api_requests_total', 'endpoint="/healthz"'), healthzSent, `scrape ${scrape}`);
    assert.equal(metricTotal(res.text, 'api_requests_total', 'endpoint="/metrics"') ?? 0, scrape, `scrape ${scrape}`);
    // Pre-warmed: pool_min 2 per worker, 4 in all.
    assert.equal(metricTotal(res.text, 'api_db_pool_size'), 4);
    // The GC pause histogram the loadgen reads (samples appear after a first collection).
    assert.match(res.text, /^# TYPE nodejs_gc_duration_seconds histogram$/m);
  }
  const lines = s.output().stderr.split('\n').filter((l) => l.startsWith('listening on '));
  assert.equal(lines.length, 1);

  s.child.kill('SIGTERM');
  const { code } = await s.exited;
  assert.equal(code, 0);
  assert.ok(!pids.some(alive), 'a worker outlived the primary');
});

test('a worker that dies is replaced on the same port and logged; the others keep serving', { skip }, async (t) => {
  const s = await startCluster(t, { API_LOG_FORMAT: 'json' });
  const before = await workersBySlot(s.base, 2);
  const victim = before.get(1).pid;
  process.kill(victim, 'SIGKILL');
  // Until the primary has seen the exit, node:cluster may still hand a new connection to the
  // dead worker, and that connection is lost (a hang for the client): a limit of node:cluster.
  const restarted = new RegExp(`"slot":1,"worker_pid":${victim},"code":null,"signal":"SIGKILL".*"msg":"worker exited: restarting it"`);
  const started = Date.now();
  while (!restarted.test(s.output().stderr)) {
    assert.ok(Date.now() - started < 5_000, 'the primary did not log the exit within 5 s');
    await sleep(10);
  }
  for (;;) {
    const after = await workersBySlot(s.base, 2);
    if (after.get(1).pid !== victim) {
      assert.equal(after.get(0).pid, before.get(0).pid, 'the other worker was restarted too');
      break;
    }
    assert.ok(Date.now() - started < 10_000, 'slot 1 was not replaced within 10 s');
    await sleep(50);
  }
  const log = s.output().stderr;
  assert.equal(log.split('\n').filter((l) => l.startsWith('listening on ')).length, 1);
});

test('API_EXIT_ON_STDIN_EOF=true: the end of stdin stops the primary and every worker, exit 0', { skip }, async (t) => {
  const s = await startCluster(t, { API_EXIT_ON_STDIN_EOF: 'true' }, { stdin: 'pipe' });
  const pids = [...(await workersBySlot(s.base, 2)).values()].map((w) => w.pid);
  s.child.stdin.end();
  const { code } = await s.exited;
  assert.equal(code, 0, s.output().stderr);
  // The primary exits only after every worker's exit: none is left behind, not even briefly.
  assert.deepEqual(pids.filter(alive), []);
});

test('SIGTERM to the process group (as apibench stops a target): every worker drains and logs it, the primary exits 0', { skip }, async (t) => {
  const s = await startCluster(t, { API_LOG_FORMAT: 'json' }, { ownGroup: true });
  t.after(() => {
    try {
      process.kill(-s.child.pid, 'SIGKILL');
    } catch {
      // the group is gone
    }
  });
  const pids = [...(await workersBySlot(s.base, 2)).values()].map((w) => w.pid);
  process.kill(-s.child.pid, 'SIGTERM');
  const { code } = await s.exited;
  const { stderr } = s.output();
  assert.equal(code, 0, stderr);
  for (const pid of [s.child.pid, ...pids]) {
    assert.match(stderr, new RegExp(`"pid":${pid},.*"msg":"stopped"`), `pid ${pid} did not log its stop`);
  }
  assert.deepEqual(pids.filter(alive), []);
});

test('a SIGKILLed primary takes its workers with it (no orphans)', { skip }, async (t) => {
  const s = await startCluster(t, {});
  const pids = [...(await workersBySlot(s.base, 2)).values()].map((w) => w.pid);
  s.child.kill('SIGKILL');
  await s.exited;
  await untilGone(pids, 5_000);
});
