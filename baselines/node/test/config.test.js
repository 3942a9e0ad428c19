'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { loadConfig, reportedKnobs, ConfigError } = require('../src/config');

const URL = 'postgres://u@127.0.0.1:5432/db';
const load = (env) => loadConfig({ DATABASE_URL: URL, ...env });

test('defaults are the documented ones (docs/KNOBS.md)', () => {
  const c = load({});
  assert.equal(c.databaseUrl, URL);
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8080);
  assert.deepEqual(c.knobs, {
    pool_max: 50,
    pool_min: 10,
    pool_acquire_timeout_ms: 3000,
    test_before_acquire: true,
    query_timeout_ms: 2000,
    gzip: true,
    gzip_min_bytes: 1024,
    cache_headers: true,
    cache_max_age_secs: 3600,
    posts_strategy: 'batch',
    log_format: 'json',
    log_level: 'info',
    metrics: true,
    worker_threads: 0,
    argon2_memory_kib: 19456,
    argon2_iterations: 2,
    argon2_parallelism: 1,
    statement_cache: 'n/a',
    db_driver: 'n/a',
    pipelined_connections: 'n/a',
    allocator: 'n/a',
    json_buffer: 'n/a',
  });
});

test('DATABASE_URL is required and must be a postgres URL', () => {
  assert.throws(() => loadConfig({}), (e) => e instanceof ConfigError && /DATABASE_URL is not set/.test(e.message));
  assert.throws(() => loadConfig({ DATABASE_URL: '' }), ConfigError);
  assert.throws(() => loadConfig({ DATABASE_URL: 'mysql://x' }), ConfigError);
  assert.equal(loadConfig({ DATABASE_URL: 'postgresql://x/y' }).databaseUrl, 'postgresql://x/y');
});

test('HOST/PORT, API_LISTEN and their precedence', () => {
  assert.deepEqual(
    (({ host, port }) => ({ host, port }))(load({ HOST: '0.0.0.0', PORT: '0' })),
    { host: '0.0.0.0', port: 0 },
  );
  const l = load({ API_LISTEN: '127.0.0.2:9000' });
  assert.equal(l.host, '127.0.0.2');
  assert.equal(l.port, 9000);
  const v6 = load({ API_LISTEN: '[::1]:9001' });
  assert.equal(v6.host, '::1');
  assert.equal(v6.port, 9001);
  const mixed = load({ API_LISTEN: '127.0.0.2:9000', PORT: '7000' });
  assert.equal(mixed.host, '127.0.0.2');
  assert.equal(mixed.port, 7000);
  for (const bad of [{ PORT: '-1' }, { PORT: '65536' }, { PORT: 'http' }, { API_LISTEN: 'nope' }, { API_LISTEN: 'h:x' }]) {
    assert.throws(() => load(bad), ConfigError, JSON.stringify(bad));
  }
});

test('knobs parse and report their values', () => {
  const c = load({
    API_POOL_MAX: '5',
    API_POOL_MIN: '0',
    API_POOL_ACQUIRE_TIMEOUT_MS: '250',
    API_GZIP: 'false',
    API_CACHE_HEADERS: 'false',
    API_CACHE_MAX_AGE_SECS: '0',
    API_POSTS_STRATEGY: 'n_plus_one',
    API_LOG_FORMAT: 'off',
    API_LOG_LEVEL: 'debug',
    API_METRICS: 'false',
    API_ARGON2_MEMORY_KIB: '64',
    API_ARGON2_ITERATIONS: '1',
    API_ARGON2_PARALLELISM: '2',
    API_TEST_BEFORE_ACQUIRE: 'false',
    API_WORKER_THREADS: '4',
  });
  assert.equal(c.knobs.pool_max, 5);
  assert.equal(c.knobs.pool_min, 0);
  assert.equal(c.knobs.pool_acquire_timeout_ms, 250);
  assert.equal(c.knobs.gzip, false);
  assert.equal(c.knobs.cache_headers, false);
  assert.equal(c.knobs.cache_max_age_secs, 0);
  assert.equal(c.knobs.posts_strategy, 'n_plus_one');
  assert.equal(c.knobs.log_format, 'off');
  assert.equal(c.knobs.log_level, 'debug');
  assert.equal(c.knobs.metrics, false);
  assert.equal(c.knobs.argon2_memory_kib, 64);
  assert.equal(c.knobs.argon2_parallelism, 2);
  const r = reportedKnobs(c.knobs);
  assert.equal(r.test_before_acquire, 'n/a');
  assert.equal(r.worker_threads, 'n/a');
  assert.equal(r.pool_max, 5);
  assert.equal(r.posts_strategy, 'n_plus_one');
});

test('empty variables count as unset', () => {
  assert.equal(load({ API_POOL_MAX: '', API_GZIP: ' ' }).knobs.pool_max, 50);
});

test('invalid knob values are errors that name the variable', () => {
  const cases = [
    ['API_POOL_MAX', '0'],
    ['API_POOL_MAX', 'ten'],
    ['API_POOL_MAX', '1.5'],
    ['API_POOL_MAX', '-3'],
    ['API_POOL_MIN', 'x'],
    ['API_POOL_ACQUIRE_TIMEOUT_MS', '0'],
    ['API_GZIP', 'maybe'],
    ['API_GZIP', '1'],
    ['API_CACHE_HEADERS', 'yes'],
    ['API_CACHE_MAX_AGE_SECS', '-1'],
    ['API_POSTS_STRATEGY', 'lazy'],
    ['API_POSTS_STRATEGY', 'Batch'],
    ['API_LOG_FORMAT', 'xml'],
    ['API_LOG_LEVEL', 'verbose'],
    ['API_METRICS', 'on'],
    ['API_TEST_BEFORE_ACQUIRE', 'perhaps'],
    ['API_WORKER_THREADS', '-1'],
    ['API_ARGON2_MEMORY_KIB', '7'],
    ['API_ARGON2_ITERATIONS', '0'],
    ['API_ARGON2_PARALLELISM', '0'],
  ];
  for (const [name, value] of cases) {
    assert.throws(
      () => load({ [name]: value }),
      (e) => e instanceof ConfigError && e.message.includes(name),
      `${name}=${value}`,
    );
  }
});

test('cross-knob rules: pool_min <= pool_max, argon2 memory >= 8 x lanes', () => {
  assert.throws(() => load({ API_POOL_MAX: '5', API_POOL_MIN: '6' }), /must not exceed/);
  // the default pool_min (10) is above a pool_max of 5, as in the Rust API
  assert.throws(() => load({ API_POOL_MAX: '5' }), /must not exceed/);
  assert.equal(load({ API_POOL_MAX: '5', API_POOL_MIN: '5' }).knobs.pool_min, 5);
  assert.throws(() => load({ API_ARGON2_MEMORY_KIB: '15', API_ARGON2_PARALLELISM: '2' }), /8 x/);
});
