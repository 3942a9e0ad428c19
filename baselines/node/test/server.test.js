'use strict';

// The entry point as a process: start-up errors, the listening line, graceful shutdown.

const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer } = require('../test-support/helpers');

test('missing DATABASE_URL: a clear error and exit 1', async () => {
  const s = startServer({});
  const { exit } = await s.ready;
  assert.equal(exit.code, 1);
  assert.match(s.output().stderr, /DATABASE_URL is not set/);
});

test('an invalid knob: a clear error and exit 1', async () => {
  const s = startServer({ DATABASE_URL: 'postgres://x@127.0.0.1:1/x', API_POSTS_STRATEGY: 'lazy' });
  const { exit } = await s.ready;
  assert.equal(exit.code, 1);
  assert.match(s.output().stderr, /API_POSTS_STRATEGY="lazy": expected one of batch, n_plus_one/);
});

test('an unreachable database at start-up: exit 1', async () => {
  const s = startServer({ DATABASE_URL: 'postgres://x@127.0.0.1:1/x', API_POOL_ACQUIRE_TIMEOUT_MS: '500' });
  const { exit } = await s.ready;
  assert.equal(exit.code, 1);
  assert.match(s.output().stderr, /cannot connect to the database/);
});

const DB = process.env.DATABASE_URL;
test('listens on PORT=0, prints one listening line, exits 0 on SIGTERM', { skip: DB ? false : 'DATABASE_URL is not set: skipping the process test that needs PostgreSQL' }, async () => {
  const s = startServer({ DATABASE_URL: DB, PORT: '0', API_LOG_FORMAT: 'off', API_POOL_MIN: '2' });
  const { url, exit } = await s.ready;
  assert.ok(url, `server did not start: ${JSON.stringify(exit)} ${s.output().stderr}`);
  assert.match(url, /^http:\/\/127\.0\.0\.1:[1-9][0-9]*$/);
  const res = await fetch(`${url}/nope`);
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, 'not_found');
  s.child.kill('SIGTERM');
  const { code } = await s.exited;
  assert.equal(code, 0);
  const lines = s.output().stderr.split('\n').filter((l) => l.startsWith('listening on '));
  assert.equal(lines.length, 1);
  assert.equal(s.output().stdout, '');
});
