'use strict';

// Database faults under the running Node.js server (`node src/server.js`), the counterpart of
// api/tests/faults.rs, against a real PostgreSQL (DATABASE_URL; skipped without it).
//
// The other test files run in parallel on the same server (`node --test`), so nothing here stops
// or freezes PostgreSQL itself: the server under test reaches it through a TCP proxy this file
// owns. Pausing the proxy (sockets open, no byte forwarded) is what a SIGSTOPped or partitioned
// server looks like to a client; stopping it refuses new connections and cuts every session, as
// a stopped server does. Sessions are terminated for real (pg_terminate_backend, only this
// server's, found by the proxy's upstream ports) and a slow statement is a real lock wait on a
// table the test locks. Every 503 must be exactly the contract's error with `Retry-After: 1`;
// every wait is bounded, and the proxy is resumed and the server killed even when a test fails.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const net = require('node:net');
const pg = require('pg');
const { loadConfig } = require('../src/config');
const { createPool, QUERY_TIMEOUT_GRACE_MS } = require('../src/db');
const { freshSchema, startServer, request } = require('../test-support/helpers');

const DB = process.env.DATABASE_URL;
const skip = DB ? false : 'DATABASE_URL is not set: skipping the fault tests that need PostgreSQL';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A TCP proxy in front of `target` ({host, port}) that the test can pause, stop and restart.
function faultProxy(target) {
  const links = new Set();
  let paused = false;
  let listener = null;
  let port = 0;
  function link(client) {
    const upstream = net.connect(target.port, target.host);
    const l = { client, upstream, up: [], down: [] };
    links.add(l);
    const cut = () => {
      links.delete(l);
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d) => (paused ? l.up.push(d) : upstream.write(d)));
    upstream.on('data', (d) => (paused ? l.down.push(d) : client.write(d)));
    for (const s of [client, upstream]) {
      s.on('error', cut);
      s.on('close', cut);
    }
  }
  return {
    get port() {
      return port;
    },
    // The local ports of the proxy's connections to PostgreSQL (pg_stat_activity.client_port).
    upstreamPorts: () => [...links].map((l) => l.upstream.localPort).filter(Boolean),
    // Listens on 127.0.0.1 (again on the same port after stop()).
    listen: () =>
      new Promise((resolve, reject) => {
        listener = net.createServer(link);
        listener.once('error', reject);
        listener.listen(port, '127.0.0.1', () => {
          port = listener.address().port;
          resolve();
        });
      }),
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      for (const l of links) {
        for (const d of l.up.splice(0)) l.upstream.write(d);
        for (const d of l.down.splice(0)) l.client.write(d);
      }
    },
    // Refuses new connections and cuts every session, as a stopped server does.
    stop: () =>
      new Promise((resolve) => {
        for (const l of links) {
          l.client.destroy();
          l.upstream.destroy();
        }
        links.clear();
        if (!listener) return resolve();
        listener.close(() => resolve());
        listener = null;
      }),
  };
}

// DATABASE_URL rewritten to go through `proxyPort` (when given) and to use `schema`.
function databaseUrl(schema, proxyPort) {
  const u = new URL(DB);
  if (proxyPort !== undefined) {
    u.hostname = '127.0.0.1';
    u.port = String(proxyPort);
  }
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

function target() {
  const u = new URL(DB);
  return { host: u.hostname.replace(/^\[(.+)\]$/, '$1') || '127.0.0.1', port: Number(u.port || 5432) };
}

// `node src/server.js` on 127.0.0.1:0 with cheap hashing and no logs; killed after the test.
async function startNode(t, url, env) {
  const s = startServer({
    DATABASE_URL: url,
    PORT: '0',
    API_LOG_FORMAT: 'off',
    API_ARGON2_MEMORY_KIB: '64',
    API_ARGON2_ITERATIONS: '1',
    ...env,
  });
  t.after(() => s.child.kill('SIGKILL'));
  const { url: base, exit } = await s.ready;
  assert.ok(base, `server did not start: ${JSON.stringify(exit)} ${s.output().stderr}`);
  return { ...s, base };
}

// The contract's 503, exactly: no driver message reaches the body.
function assertUnavailable(res, what) {
  assert.equal(res.status, 503, `${what}: ${res.text}`);
  assert.equal(res.headers['retry-after'], '1', what);
  assert.equal(res.headers['content-type'], 'application/json', what);
  assert.deepEqual(
    res.json,
    { error: { code: 'service_unavailable', message: 'service temporarily unavailable' } },
    what,
  );
}

async function createUser(base) {
  const res = await request(base, 'POST', '/api/users', {
    body: { email: `fault-${process.pid}-${Date.now()}-${Math.random()}@example.com`, password: 'correct horse', name: 'Ann' },
  });
  assert.equal(res.status, 201, res.text);
  return res.json.id;
}

// GET /api/users/{id} until 200 with that user; every answer on the way must be the contract's
// 503. Returns {ms, unavailable}.
async function untilServed(base, id, patienceMs = 5000) {
  const started = Date.now();
  let unavailable = 0;
  for (;;) {
    const res = await request(base, 'GET', `/api/users/${id}`);
    if (res.status === 200) {
      assert.equal(res.json.id, id);
      return { ms: Date.now() - started, unavailable };
    }
    assertUnavailable(res, 'while recovering');
    unavailable++;
    assert.ok(Date.now() - started < patienceMs, `not served again within ${patienceMs} ms`);
    await sleep(20);
  }
}

async function waitUntil(what, patienceMs, condition) {
  const started = Date.now();
  while (!(await condition())) {
    assert.ok(Date.now() - started < patienceMs, `waited ${patienceMs} ms for ${what}`);
    await sleep(20);
  }
}

// A schema of our own and an admin connection (not through the proxy); both go after the test.
async function setup(t) {
  const schema = await freshSchema(DB);
  const admin = new pg.Client({ connectionString: DB });
  await admin.connect();
  t.after(async () => {
    await admin.end().catch(() => {});
    await schema.drop().catch(() => {});
  });
  const lockWaiters = async () =>
    Number(
      (
        await admin.query(
          `SELECT count(*) AS n FROM pg_locks WHERE relation = '${schema.name}.users'::regclass AND NOT granted`,
        )
      ).rows[0].n,
    );
  return { schema: schema.name, admin, lockWaiters };
}

// A connection holding an exclusive lock on the schema's `users`: reads of it wait.
async function lockUsers(t, schema) {
  const locker = new pg.Client({ connectionString: DB });
  await locker.connect();
  t.after(() => locker.end().catch(() => {}));
  await locker.query('BEGIN');
  await locker.query(`LOCK TABLE ${schema}.users IN ACCESS EXCLUSIVE MODE`);
  return { release: () => locker.query('ROLLBACK') };
}

const FAULT_KNOBS = {
  API_POOL_MAX: '4',
  API_POOL_MIN: '1',
  API_POOL_ACQUIRE_TIMEOUT_MS: '1500',
  API_QUERY_TIMEOUT_MS: '1000',
};

test('query_timeout_ms: default 2000, 1..=2^31-1, given to the pool as statement_timeout and query_timeout', async () => {
  const load = (env) => loadConfig({ DATABASE_URL: 'postgres://u@127.0.0.1:1/db', ...env });
  assert.equal(load({}).knobs.query_timeout_ms, 2000);
  assert.equal(load({ API_QUERY_TIMEOUT_MS: '750' }).knobs.query_timeout_ms, 750);
  for (const bad of ['0', '-1', '1.5', 'soon', '2147483648']) {
    assert.throws(() => load({ API_QUERY_TIMEOUT_MS: bad }), /API_QUERY_TIMEOUT_MS/, bad);
  }
  const pool = createPool(load({ API_QUERY_TIMEOUT_MS: '750' }));
  assert.equal(pool.options.statement_timeout, 750);
  assert.equal(pool.options.query_timeout, 750 + QUERY_TIMEOUT_GRACE_MS);
  await pool.end();
});

test('stopped database: 503 + Retry-After at once, served again when it is back', { skip }, async (t) => {
  const { schema } = await setup(t);
  const proxy = faultProxy(target());
  await proxy.listen();
  t.after(() => proxy.stop());
  const s = await startNode(t, databaseUrl(schema, proxy.port), FAULT_KNOBS);
  const id = await createUser(s.base);

  await proxy.stop();
  for (const [method, path, body] of [
    ['GET', `/api/users/${id}`],
    ['GET', `/api/users?ids=${id}`],
    ['GET', '/api/posts'],
    ['GET', '/healthz'],
    ['POST', '/api/posts', { author_id: id, title: 't', body: 'b' }],
  ]) {
    const res = await request(s.base, method, path, { body });
    assertUnavailable(res, `${method} ${path}`);
    // A refused connection fails at once in node-postgres (no retry until the acquire timeout).
    assert.ok(res.ms < 1500, `${method} ${path}: 503 after ${res.ms} ms`);
    t.diagnostic(`stopped: ${method} ${path} → 503 in ${res.ms.toFixed(1)} ms`);
  }

  await proxy.listen();
  const { ms, unavailable } = await untilServed(s.base, id);
  t.diagnostic(`stopped: served again ${ms} ms after the database was back (${unavailable} × 503 on the way)`);
});

test('paused database: 503 within the query timeout (or the acquire timeout when connecting), never a hang', { skip }, async (t) => {
  const { schema } = await setup(t);
  const proxy = faultProxy(target());
  await proxy.listen();
  t.after(() => {
    proxy.resume();
    return proxy.stop();
  });
  const s = await startNode(t, databaseUrl(schema, proxy.port), {
    ...FAULT_KNOBS,
    API_POOL_MAX: '1',
    API_POOL_MIN: '1',
    API_POOL_ACQUIRE_TIMEOUT_MS: '2500',
  });
  const id = await createUser(s.base);
  const other = await createUser(s.base);

  proxy.pause();
  try {
    // The pooled client sends the statement and hears nothing: pg's query_timeout (1000 + 250 ms).
    const byQueryTimeout = await request(s.base, 'GET', `/api/users/${id}`);
    assertUnavailable(byQueryTimeout, 'paused, pooled client');
    assert.ok(
      byQueryTimeout.ms >= 1000 + QUERY_TIMEOUT_GRACE_MS && byQueryTimeout.ms < 2500,
      `answered after ${byQueryTimeout.ms} ms: not by the query timeout`,
    );
    // That client was destroyed; a new one never completes its handshake: the acquire timeout.
    const byAcquireTimeout = await request(s.base, 'GET', `/api/users/${id}`);
    assertUnavailable(byAcquireTimeout, 'paused, connecting');
    assert.ok(byAcquireTimeout.ms >= 2500, `answered after ${byAcquireTimeout.ms} ms: not by the acquire timeout`);
    t.diagnostic(
      `paused: 503 after ${byQueryTimeout.ms.toFixed(0)} ms (query_timeout_ms=1000), ` +
        `${byAcquireTimeout.ms.toFixed(0)} ms when connecting (pool_acquire_timeout_ms=2500)`,
    );
  } finally {
    proxy.resume();
  }
  const { ms } = await untilServed(s.base, id);
  t.diagnostic(`paused: served again ${ms} ms after the resume`);
  // The right rows: no client went back to the pool owing a reply to an earlier statement.
  for (let i = 0; i < 5; i++) {
    for (const want of [other, id]) {
      const res = await request(s.base, 'GET', `/api/users/${want}`);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.id, want);
    }
  }
});

test('terminated sessions: replaced without restarting the server', { skip }, async (t) => {
  const { schema, admin } = await setup(t);
  const proxy = faultProxy(target());
  await proxy.listen();
  t.after(() => proxy.stop());
  const s = await startNode(t, databaseUrl(schema, proxy.port), { ...FAULT_KNOBS, API_POOL_MAX: '3', API_POOL_MIN: '3' });
  const id = await createUser(s.base);
  const ports = proxy.upstreamPorts();
  assert.ok(ports.length >= 3, `pre-warmed sessions: ${ports}`);

  const { rows } = await admin.query(
    'SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity WHERE client_port = ANY($1::int[])',
    [ports],
  );
  assert.ok(rows.length >= 3 && rows.every((r) => r.terminated), JSON.stringify(rows));
  const { ms, unavailable } = await untilServed(s.base, id);
  assert.ok(unavailable <= 3, `${unavailable} failures with 3 pooled connections`);
  for (let i = 0; i < 6; i++) {
    const res = await request(s.base, 'GET', `/api/users/${id}`);
    assert.equal(res.status, 200, res.text);
  }
  t.diagnostic(`terminate: served again after ${ms} ms, ${unavailable} × 503 on the way`);
});

test('exhausted pool: 503 + Retry-After after the acquire timeout; a stuck statement 503 after the query timeout', { skip }, async (t) => {
  const { schema, lockWaiters } = await setup(t);
  const s = await startNode(t, databaseUrl(schema), {
    ...FAULT_KNOBS,
    API_POOL_MAX: '1',
    API_POOL_MIN: '1',
    API_POOL_ACQUIRE_TIMEOUT_MS: '500',
    API_QUERY_TIMEOUT_MS: '1500',
  });
  const id = await createUser(s.base);
  const lock = await lockUsers(t, schema);
  const stuck = request(s.base, 'GET', `/api/users/${id}`);
  await waitUntil('the read to wait for the lock', 5000, async () => (await lockWaiters()) === 1);

  const waiting = await request(s.base, 'GET', '/healthz');
  assertUnavailable(waiting, 'pool exhausted');
  assert.ok(waiting.ms >= 500, `${waiting.ms} ms`);
  const stuckRes = await stuck;
  assertUnavailable(stuckRes, 'statement over query_timeout_ms');
  assert.ok(stuckRes.ms >= 1500, `${stuckRes.ms} ms`);
  t.diagnostic(
    `exhausted: waiting request → 503 after ${waiting.ms.toFixed(0)} ms (acquire 500 ms); ` +
      `stuck statement → 503 after ${stuckRes.ms.toFixed(0)} ms (statement_timeout 1500 ms)`,
  );
  await lock.release();
  const res = await request(s.base, 'GET', `/api/users/${id}`);
  assert.equal(res.status, 200, res.text);
});

// SIGTERM to the server's process (the cluster primary, which passes it on to its workers),
// with requests in flight: they complete, new connections are refused, exit 0.
async function sigtermDrains(t, env) {
  const IN_FLIGHT = 8;
  const { schema, lockWaiters } = await setup(t);
  const s = await startNode(t, databaseUrl(schema), {
    API_POOL_MIN: '0',
    API_QUERY_TIMEOUT_MS: '20000',
    ...env,
  });
  const id = await createUser(s.base);
  const lock = await lockUsers(t, schema);
  // Keep-alive clients, as load generators are: their connections must not hold the exit.
  const agents = [];
  const agent = () => {
    const a = new http.Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(a);
    return a;
  };
  t.after(() => agents.forEach((a) => a.destroy()));
  const inFlight = Array.from({ length: IN_FLIGHT }, () => request(s.base, 'GET', `/api/users/${id}`, { agent: agent() }));
  let sigtermSent = false;
  const load = Array.from({ length: 2 }, async () => {
    const a = agent();
    let answered = 0;
    for (;;) {
      try {
        const res = await request(s.base, 'GET', '/healthz', { agent: a });
        assert.equal(res.status, 200, `load during the drain: ${res.text}`);
        answered++;
      } catch (err) {
        if (sigtermSent) return answered; // refused or closed once it stopped accepting: not sent
        throw err;
      }
    }
  });
  await waitUntil('every in-flight read to wait for the lock', 10_000, async () => (await lockWaiters()) === IN_FLIGHT);

  sigtermSent = true;
  s.child.kill('SIGTERM');
  await sleep(500);
  assert.equal(s.child.exitCode, null, 'exited with requests in flight');
  await assert.rejects(
    new Promise((resolve, reject) => {
      const c = net.connect(Number(new URL(s.base).port), '127.0.0.1', () => {
        c.destroy();
        resolve();
      });
      c.on('error', reject);
    }),
    'still accepting connections after SIGTERM',
  );

  const released = Date.now();
  await lock.release();
  const results = await Promise.all(inFlight);
  for (const res of results) {
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.id, id);
  }
  const answered = (await Promise.all(load)).reduce((a, b) => a + b, 0);
  const { code } = await s.exited;
  const exitMs = Date.now() - released;
  assert.equal(code, 0);
  // Well inside the 10 s grace: idle keep-alive connections did not hold the exit.
  assert.ok(exitMs < 5000, `exited ${exitMs} ms after the last request could finish`);
  t.diagnostic(
    `SIGTERM: ${results.length}/${IN_FLIGHT} in-flight requests completed 200, ${answered} load requests ` +
      `answered 200 before it stopped accepting; exit 0 ${exitMs} ms after the lock was released`,
  );
}

test('SIGTERM: every in-flight request completes with its normal status, then exit 0', { skip }, (t) =>
  sigtermDrains(t, { API_POOL_MAX: '12' }),
);

// 12 connections per worker: the 8 in-flight reads and the 2 load connections fit in either
// worker's pool however node:cluster hands the connections out.
test('SIGTERM under NODE_WORKERS=2: every worker drains its in-flight requests, then exit 0', { skip }, (t) =>
  sigtermDrains(t, { NODE_WORKERS: '2', API_POOL_MAX: '24' }),
);

test('NODE_WORKERS=2, database gone: a dead worker whose replacements cannot connect stops the cluster, exit 1 (no endless restarts)', { skip }, async (t) => {
  const { schema } = await setup(t);
  const proxy = faultProxy(target());
  await proxy.listen();
  t.after(() => proxy.stop());
  const s = await startNode(t, databaseUrl(schema, proxy.port), { ...FAULT_KNOBS, NODE_WORKERS: '2', API_LOG_FORMAT: 'json' });
  const pids = new Set();
  while (pids.size < 2) pids.add((await request(s.base, 'GET', '/healthz', { agent: false })).json.cluster.pid);

  await proxy.stop();
  const started = Date.now();
  process.kill([...pids][0], 'SIGKILL');
  const { code } = await s.exited;
  const { stderr } = s.output();
  assert.equal(code, 1, stderr);
  assert.equal(stderr.match(/"msg":"worker exited: restarting it"/g).length, 5, stderr);
  assert.match(stderr, /error: cluster worker \d failed to restart 5 times in a row/);
  t.diagnostic(`database gone: gave up ${Date.now() - started} ms after the worker died (5 attempts)`);
});
