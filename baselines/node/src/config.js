'use strict';

// Configuration from the environment: DATABASE_URL, HOST/PORT (or API_LISTEN) and the knobs of
// docs/KNOBS.md (`API_<NAME>`). Every invalid value is an error (ConfigError) that names the
// variable; server.js prints it and exits 1. Empty variables count as unset. Also the Node-only
// NODE_WORKERS (cluster mode) and how the pool is split between its workers (splitPool).

const os = require('node:os');

class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

const LOG_FORMATS = ['json', 'pretty', 'off'];
const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'];
const POSTS_STRATEGIES = ['batch', 'n_plus_one'];

function get(env, name) {
  const v = env[name];
  if (v === undefined || v === null) return undefined;
  const s = String(v).trim();
  return s === '' ? undefined : s;
}

function parseIntKnob(env, name, def, min, max = Number.MAX_SAFE_INTEGER) {
  const raw = get(env, name);
  if (raw === undefined) return def;
  if (!/^[0-9]+$/.test(raw)) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)}: expected an integer >= ${min}`);
  }
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in ${min}..=${max}`;
    throw new ConfigError(`${name}=${raw}: expected an integer ${range}`);
  }
  return n;
}

function parseBoolKnob(env, name, def) {
  const raw = get(env, name);
  if (raw === undefined) return def;
  // Exactly `true` / `false`, like the Rust API's clap bool parser.
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw new ConfigError(`${name}=${JSON.stringify(raw)}: expected true or false`);
}

function parseEnumKnob(env, name, def, values) {
  const raw = get(env, name);
  if (raw === undefined) return def;
  if (!values.includes(raw)) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)}: expected one of ${values.join(', ')}`);
  }
  return raw;
}

function parsePort(raw, name) {
  if (!/^[0-9]+$/.test(raw) || Number(raw) > 65535) {
    throw new ConfigError(`${name}=${JSON.stringify(raw)}: expected a port number in 0..=65535`);
  }
  return Number(raw);
}

// `host:port`, `[v6]:port`.
function parseListen(raw) {
  const m = /^\[([^\]]+)\]:([^:]+)$/.exec(raw) || /^([^:]+):([^:]+)$/.exec(raw);
  if (!m) throw new ConfigError(`API_LISTEN=${JSON.stringify(raw)}: expected host:port`);
  return { host: m[1], port: parsePort(m[2], 'API_LISTEN (port)') };
}

// NODE_WORKERS / API_NODE_WORKERS (the latter wins, so a scenario knob `node_workers` works):
// unset → 1 (one process, no cluster); `0` or `auto` → one worker per CPU this process may run
// on. os.availableParallelism() is libuv's count of the CPUs in the affinity mask (`taskset -c 0
// node` → 1 on a 2-CPU machine, checked on Node 20.20), not a cgroup CPU quota.
const MAX_NODE_WORKERS = 1024;

// → {workers, variable}: the count and the variable it came from (for messages).
function parseNodeWorkers(env, availableParallelism) {
  const variable = get(env, 'API_NODE_WORKERS') !== undefined ? 'API_NODE_WORKERS' : 'NODE_WORKERS';
  const raw = get(env, variable);
  if (raw === undefined) return { workers: 1, variable };
  if (raw === 'auto') return { workers: availableParallelism(), variable };
  if (!/^[0-9]+$/.test(raw) || Number(raw) > MAX_NODE_WORKERS) {
    throw new ConfigError(`${variable}=${JSON.stringify(raw)}: expected auto or an integer in 0..=${MAX_NODE_WORKERS} (0 = auto)`);
  }
  const n = Number(raw);
  return { workers: n === 0 ? availableParallelism() : n, variable };
}

// `total` in `parts` shares as equal as integers allow, the larger ones first: 10 over 3 → 4, 3, 3.
function splitEvenly(total, parts) {
  const base = Math.floor(total / parts);
  const extra = total % parts;
  return Array.from({ length: parts }, (_, i) => base + (i < extra ? 1 : 0));
}

// The pool of each of `workers` cluster workers. The cluster must not win by opening more
// database connections than one process would, so pool_max and pool_min are totals split
// between the workers (sums exactly pool_max and pool_min; worker i's min never exceeds its
// max, as both splits give their larger shares to the same first workers). Every worker needs a
// connection of its own, so pool_max below the worker count is refused rather than the worker
// count quietly lowered: a variant runs with the workers it asked for or not at all.
function splitPool({ pool_max: poolMax, pool_min: poolMin }, workers, workersVar = 'NODE_WORKERS') {
  if (poolMax < workers) {
    throw new ConfigError(
      `${workersVar}: ${workers} workers need API_POOL_MAX >= ${workers} (one connection each; the pool is ` +
        `split between the workers), got API_POOL_MAX=${poolMax}`,
    );
  }
  const max = splitEvenly(poolMax, workers);
  const min = splitEvenly(poolMin, workers);
  return max.map((m, i) => ({ pool_max: m, pool_min: min[i] }));
}

function loadConfig(env = process.env, { availableParallelism = os.availableParallelism } = {}) {
  const databaseUrl = get(env, 'DATABASE_URL');
  if (databaseUrl === undefined) {
    throw new ConfigError(
      'DATABASE_URL is not set: the Node.js baseline needs a migrated PostgreSQL database ' +
        '(e.g. DATABASE_URL=postgres://user@127.0.0.1:5432/apibench); it does not provision one',
    );
  }
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError('DATABASE_URL: expected a postgres:// or postgresql:// URL');
  }

  // HOST/PORT win; API_LISTEN fills in what they leave unset; then 127.0.0.1:8080.
  let host = get(env, 'HOST');
  let port = get(env, 'PORT') === undefined ? undefined : parsePort(get(env, 'PORT'), 'PORT');
  const listen = get(env, 'API_LISTEN');
  if (listen !== undefined && (host === undefined || port === undefined)) {
    const l = parseListen(listen);
    if (host === undefined) host = l.host;
    if (port === undefined) port = l.port;
  }
  if (host === undefined) host = '127.0.0.1';
  if (port === undefined) port = 8080;

  const poolMax = parseIntKnob(env, 'API_POOL_MAX', 50, 1, 100000);
  const poolMin = parseIntKnob(env, 'API_POOL_MIN', 10, 0, 100000);
  if (poolMin > poolMax) {
    // As the Rust API: the default pool_min (10) with pool_max < 10 is an error too.
    throw new ConfigError(`pool_min (API_POOL_MIN=${poolMin}) must not exceed pool_max (API_POOL_MAX=${poolMax})`);
  }
  const argon2Parallelism = parseIntKnob(env, 'API_ARGON2_PARALLELISM', 1, 1, 255);
  const argon2MemoryKib = parseIntKnob(env, 'API_ARGON2_MEMORY_KIB', 19456, 8, 2 ** 32 - 1);
  if (argon2MemoryKib < 8 * argon2Parallelism) {
    throw new ConfigError(
      `API_ARGON2_MEMORY_KIB=${argon2MemoryKib} must be at least 8 x API_ARGON2_PARALLELISM (${8 * argon2Parallelism})`,
    );
  }

  const knobs = {
    pool_max: poolMax,
    pool_min: poolMin,
    pool_acquire_timeout_ms: parseIntKnob(env, 'API_POOL_ACQUIRE_TIMEOUT_MS', 3000, 1, 2 ** 31 - 1),
    // Parsed so that a bad value is still an error, but node-postgres has no such switch.
    test_before_acquire: parseBoolKnob(env, 'API_TEST_BEFORE_ACQUIRE', true),
    // Per statement: PostgreSQL's statement_timeout, and pg's query_timeout 250 ms later (db.js).
    query_timeout_ms: parseIntKnob(env, 'API_QUERY_TIMEOUT_MS', 2000, 1, 2 ** 31 - 1),
    gzip: parseBoolKnob(env, 'API_GZIP', true),
    // Bodies below this many bytes go out uncompressed (the compression middleware's threshold).
    gzip_min_bytes: parseIntKnob(env, 'API_GZIP_MIN_BYTES', 1024, 0, 65535),
    cache_headers: parseBoolKnob(env, 'API_CACHE_HEADERS', true),
    cache_max_age_secs: parseIntKnob(env, 'API_CACHE_MAX_AGE_SECS', 3600, 0, 2 ** 31 - 1),
    posts_strategy: parseEnumKnob(env, 'API_POSTS_STRATEGY', 'batch', POSTS_STRATEGIES),
    log_format: parseEnumKnob(env, 'API_LOG_FORMAT', 'json', LOG_FORMATS),
    log_level: parseEnumKnob(env, 'API_LOG_LEVEL', 'info', LOG_LEVELS),
    metrics: parseBoolKnob(env, 'API_METRICS', true),
    // Tokio only; Node runs one event-loop thread.
    worker_threads: parseIntKnob(env, 'API_WORKER_THREADS', 0, 0, 100000),
    argon2_memory_kib: argon2MemoryKib,
    argon2_iterations: parseIntKnob(env, 'API_ARGON2_ITERATIONS', 2, 1, 2 ** 32 - 1),
    argon2_parallelism: argon2Parallelism,
    // The Rust API's database driver, its statement cache, allocator and JSON buffer: nothing
    // here to switch (node-postgres, V8's heap, JSON.stringify), reported as "n/a".
    statement_cache: 'n/a',
    db_driver: 'n/a',
    pipelined_connections: 'n/a',
    allocator: 'n/a',
    json_buffer: 'n/a',
  };

  const { workers: nodeWorkers, variable: workersVar } = parseNodeWorkers(env, availableParallelism);
  // One entry per worker (one for the single process): what its own pool gets.
  const poolShares = splitPool(knobs, nodeWorkers, workersVar);

  return { databaseUrl, host, port, knobs, nodeWorkers, poolShares };
}

// What /healthz reports: every knob, with the ones this target cannot honour as "n/a".
const NOT_APPLICABLE = [
  'test_before_acquire',
  'worker_threads',
  'statement_cache',
  'db_driver',
  'pipelined_connections',
  'allocator',
  'json_buffer',
];

function reportedKnobs(knobs) {
  const out = {};
  for (const [k, v] of Object.entries(knobs)) out[k] = NOT_APPLICABLE.includes(k) ? 'n/a' : v;
  return out;
}

module.exports = { loadConfig, reportedKnobs, splitPool, ConfigError, NOT_APPLICABLE };
