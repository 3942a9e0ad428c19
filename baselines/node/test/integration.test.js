'use strict';

// The contract over HTTP against a real PostgreSQL (DATABASE_URL; skipped without it). Each
// run works in its own schema, created from the Rust API's migrations and dropped at the end.

const test = require('node:test');
const assert = require('node:assert/strict');
const zlib = require('node:zlib');
const http = require('node:http');
const pg = require('pg');
const { createApp } = require('../src/app');
const { createRepo } = require('../src/db');
const { loadConfig } = require('../src/config');
const { createLogger } = require('../src/logger');
const { freshSchema, serve } = require('../test-support/helpers');

const DB = process.env.DATABASE_URL;
const skip = DB ? false : 'DATABASE_URL is not set: skipping the PostgreSQL integration tests';

const silent = createLogger({ log_format: 'off', log_level: 'info' });
const config = (env = {}) =>
  loadConfig({ DATABASE_URL: DB || 'postgres://unused', API_ARGON2_MEMORY_KIB: '64', API_ARGON2_ITERATIONS: '1', ...env });

// A pool wrapper that counts statements (for batch vs n_plus_one).
function counting(pool) {
  const c = {
    n: 0,
    query: (...args) => {
      c.n++;
      return pool.query(...args);
    },
    get totalCount() {
      return pool.totalCount;
    },
    get idleCount() {
      return pool.idleCount;
    },
  };
  return c;
}

// Raw HTTP (fetch would set its own Content-Type / decompress).
function raw(base, method, path, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        let json;
        try {
          json = JSON.parse(buf.toString('utf8'));
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, buf, text: buf.toString('utf8'), json });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
const JSONH = { 'content-type': 'application/json' };
const post = (base, path, value) => raw(base, 'POST', path, { headers: JSONH, body: typeof value === 'string' ? value : JSON.stringify(value) });
const get = (base, path, headers) => raw(base, 'GET', path, { headers });

function assertError(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.equal(res.headers['content-type'], 'application/json');
  assert.equal(res.json.error.code, code, res.text);
  assert.equal(typeof res.json.error.message, 'string');
  if (code === 'validation_failed') assert.equal(typeof res.json.error.fields, 'object');
  else assert.equal(res.json.error.fields, undefined);
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

test('the contract against PostgreSQL', { skip }, async (t) => {
  const schema = await freshSchema(DB);
  const pool = new pg.Pool({ ...schema.poolOptions, max: 5 });
  const cpool = counting(pool);
  const app = createApp({ config: config(), pool: cpool, logger: silent, repo: createRepo(cpool) });
  const srv = await serve(app);
  const B = srv.base;
  t.after(async () => {
    await srv.close();
    await pool.end();
    await schema.drop();
  });

  let ann;
  let bob;
  await t.test('POST /api/users creates, normalises, hides the hash', async () => {
    const res = await post(B, '/api/users', { email: '  Ann@Example.COM ', password: 'correct horse', name: ' Ann ' });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.headers['content-type'], 'application/json');
    ann = res.json;
    assert.deepEqual(Object.keys(ann), ['id', 'email', 'name', 'created_at']);
    assert.equal(typeof ann.id, 'number');
    assert.equal(ann.email, 'ann@example.com');
    assert.equal(ann.name, 'Ann');
    assert.match(ann.created_at, ISO_MS);
    const { rows } = await pool.query('SELECT password_hash FROM users WHERE id = $1', [ann.id]);
    assert.match(rows[0].password_hash, /^\$argon2id\$v=19\$m=64,t=1,p=1\$/);
    bob = (await post(B, '/api/users', { email: 'bob@example.com', password: 'password1', name: 'Bob' })).json;
  });

  await t.test('duplicate email (any case/spacing) → 409 email_taken', async () => {
    assertError(await post(B, '/api/users', { email: 'ANN@example.com ', password: 'another one', name: 'A2' }), 409, 'email_taken');
  });

  await t.test('validation: all fields at once', async () => {
    const res = await post(B, '/api/users', { email: 'not-an-email', password: 'short' });
    assertError(res, 400, 'validation_failed');
    assert.deepEqual(res.json.error.fields, {
      email: 'must be a valid email address',
      name: 'is required',
      password: 'must be 8 to 128 characters',
    });
    assert.equal(res.json.error.message, 'request validation failed');
  });

  await t.test('body errors: 415, 413, invalid_json, 422', async () => {
    assertError(await raw(B, 'POST', '/api/users', { body: '{}' }), 415, 'unsupported_media_type');
    assertError(await raw(B, 'POST', '/api/users', { headers: { 'content-type': 'text/plain' }, body: '{}' }), 415, 'unsupported_media_type');
    const big = JSON.stringify({ email: 'a@b.c', password: 'x'.repeat(70 * 1024), name: 'n' });
    assertError(await post(B, '/api/users', big), 413, 'payload_too_large');
    const exactly = '{"name":"' + 'n'.repeat(64 * 1024 - 11) + '"}';
    assert.equal(Buffer.byteLength(exactly), 64 * 1024);
    assertError(await post(B, '/api/users', exactly), 400, 'validation_failed');
    for (const bad of ['', '   ', '{', '{"email": "a@b.c",}', "{'a':1}", 'nul', '{"a":1} x']) {
      assertError(await post(B, '/api/users', bad), 400, 'invalid_json');
    }
    assertError(await raw(B, 'POST', '/api/users', { headers: JSONH, body: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]) }), 400, 'invalid_json');
    for (const shape of ['[]', '[1]', '"x"', '5', 'null', '{"email": 5}', '{"name": ["a"]}', '{"password": {}}']) {
      assertError(await post(B, '/api/users', shape), 422, 'unprocessable_entity');
    }
    assertError(await post(B, '/api/posts', '{"author_id": "1", "title": "t", "body": "b"}'), 422, 'unprocessable_entity');
    assertError(await post(B, '/api/posts', '{"author_id": 1.5, "title": "t", "body": "b"}'), 422, 'unprocessable_entity');
    assertError(await raw(B, 'POST', '/api/posts', { headers: { ...JSONH, 'content-encoding': 'gzip' }, body: zlib.gzipSync('{}') }), 415, 'unsupported_media_type');
  });

  await t.test('GET /api/users/{id}: 200, 404, 400', async () => {
    const res = await get(B, `/api/users/${ann.id}`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, ann);
    assertError(await get(B, '/api/users/987654'), 404, 'not_found');
    for (const bad of ['0', '-1', '1.5', 'abc', '99999999999999999999', '%20']) {
      assertError(await get(B, `/api/users/${bad}`), 400, 'bad_request');
    }
  });

  await t.test('GET /api/users?ids=', async () => {
    const res = await get(B, `/api/users?ids=${bob.id},${ann.id},${bob.id},999999`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, { users: [ann, bob] });
    for (const q of ['', '?ids=', '?ids=a', '?ids=1,,2', '?ids=0', `?ids=${Array(1001).fill(1).join(',')}`]) {
      assertError(await get(B, `/api/users${q}`), 400, 'bad_request');
    }
    assert.equal((await get(B, `/api/users?ids=${Array(1000).fill(ann.id).join(',')}`)).json.users.length, 1);
  });

  const posts = [];
  await t.test('POST /api/posts', async () => {
    for (const [i, author] of [ann, bob, ann].entries()) {
      const res = await post(B, '/api/posts', { author_id: author.id, title: `t${i}`, body: `body ${i}` });
      assert.equal(res.status, 201, res.text);
      assert.deepEqual(Object.keys(res.json), ['id', 'author_id', 'title', 'body', 'created_at']);
      assert.equal(res.json.author_id, author.id);
      posts.push(res.json);
    }
    const unknown = await post(B, '/api/posts', { author_id: 424242, title: 't', body: 'b' });
    assertError(unknown, 400, 'validation_failed');
    assert.deepEqual(unknown.json.error.fields, { author_id: 'must reference an existing user' });
    const huge = await post(B, '/api/posts', '{"author_id": 9223372036854775807, "title": "t", "body": "b"}');
    assertError(huge, 400, 'validation_failed');
    const all = await post(B, '/api/posts', { author_id: 0, title: '', body: 'x'.repeat(10001) });
    assert.deepEqual(Object.keys(all.json.error.fields), ['author_id', 'body', 'title']);
  });

  await t.test('GET /api/posts: newest first with authors; batch = 2 statements', async () => {
    cpool.n = 0;
    const res = await get(B, '/api/posts?limit=2');
    assert.equal(res.status, 200);
    assert.equal(cpool.n, 2);
    const expected = [posts[2], posts[1]].map((p) => ({ ...p, author: p.author_id === ann.id ? ann : bob }));
    assert.deepEqual(res.json, { posts: expected });
    assert.equal((await get(B, '/api/posts')).json.posts.length, 3);
    for (const q of ['0', '101', 'abc', '', '-1', '1.5']) assertError(await get(B, `/api/posts?limit=${q}`), 400, 'bad_request');
    assertError(await get(B, '/api/posts?limit=1&limit=2'), 400, 'bad_request');
  });

  await t.test('GET /api/posts/{id}: ETag, Cache-Control, 304', async () => {
    const res = await get(B, `/api/posts/${posts[0].id}`);
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, posts[0]);
    assert.equal(res.headers['cache-control'], 'public, max-age=3600');
    const expectedTag = '"' + require('node:crypto').createHash('sha256').update(res.buf).digest('hex').slice(0, 32) + '"';
    assert.equal(res.headers.etag, expectedTag);
    const hit = await get(B, `/api/posts/${posts[0].id}`, { 'if-none-match': `"nope", W/${expectedTag}` });
    assert.equal(hit.status, 304);
    assert.equal(hit.buf.length, 0);
    assert.equal(hit.headers.etag, expectedTag);
    assert.equal((await get(B, `/api/posts/${posts[0].id}`, { 'if-none-match': '"nope"' })).status, 200);
    assertError(await get(B, '/api/posts/999999'), 404, 'not_found');
    assertError(await get(B, '/api/posts/x'), 400, 'bad_request');
  });

  await t.test('gzip when accepted (and the body reaches gzip_min_bytes)', async () => {
    // The three posts' page is under the default 1024-byte floor: sent as is.
    const small = await get(B, '/api/posts', { 'accept-encoding': 'gzip' });
    assert.equal(small.headers['content-encoding'], undefined);
    assert.ok(small.buf.length < 1024, `${small.buf.length} bytes`);
    const low = createApp({
      config: config({ API_GZIP_MIN_BYTES: '32' }),
      pool: cpool,
      logger: silent,
      repo: createRepo(cpool),
    });
    const lowSrv = await serve(low);
    t.after(() => lowSrv.close());
    const L = lowSrv.base;
    const res = await get(L, '/api/posts', { 'accept-encoding': 'gzip' });
    assert.equal(res.headers['content-encoding'], 'gzip');
    assert.equal(JSON.parse(zlib.gunzipSync(res.buf)).posts.length, 3);
    assert.equal((await get(L, '/api/posts', { 'accept-encoding': 'br' })).headers['content-encoding'], undefined);
    assert.equal((await get(L, '/api/posts')).headers['content-encoding'], undefined);
  });

  await t.test('unknown routes 404, wrong methods 405, always JSON', async () => {
    assertError(await get(B, '/nope'), 404, 'not_found');
    assertError(await get(B, '/api/users/'), 404, 'not_found');
    assertError(await get(B, '/api/users/1/posts'), 404, 'not_found');
    const del = await raw(B, 'DELETE', '/api/users/1');
    assertError(del, 405, 'method_not_allowed');
    assert.equal(del.headers.allow, 'GET,HEAD');
    assertError(await raw(B, 'PUT', '/api/posts'), 405, 'method_not_allowed');
    assertError(await raw(B, 'POST', '/healthz'), 405, 'method_not_allowed');
    assertError(await get(B, '/api/users/%E0%A4%A'), 400, 'bad_request');
  });

  await t.test('/healthz and /metrics', async () => {
    const h = await get(B, '/healthz');
    assert.equal(h.status, 200);
    assert.equal(h.json.status, 'ok');
    assert.equal(h.json.database, 'ok');
    assert.equal(h.json.knobs.test_before_acquire, 'n/a');
    assert.equal(h.json.knobs.worker_threads, 'n/a');
    assert.equal(h.json.knobs.pool_max, 50);
    assert.equal(typeof h.json.version, 'string');
    const m = await get(B, '/metrics');
    assert.equal(m.status, 200);
    assert.match(m.headers['content-type'], /^text\/plain/);
    assert.match(m.text, /^api_requests_total\{endpoint="\/api\/users\/\{id\}",method="GET",status="200"\} \d+$/m);
    assert.match(m.text, /^api_requests_total\{endpoint="unmatched",method="GET",status="404"\} \d+$/m);
    assert.match(m.text, /^api_request_duration_seconds_bucket\{le="0.005",endpoint="\/api\/posts",method="GET"\} \d+$/m);
    assert.match(m.text, /^api_db_pool_size \d+$/m);
    assert.match(m.text, /^api_db_pool_idle \d+$/m);
    assert.match(m.text, /^# TYPE nodejs_gc_duration_seconds histogram$/m);
    assert.doesNotMatch(m.text, /endpoint="\/api\/users\/\d/);
  });

  await t.test('n_plus_one: the same JSON from 1 + N statements', async () => {
    const app2 = createApp({ config: config({ API_POSTS_STRATEGY: 'n_plus_one', API_METRICS: 'false' }), pool: cpool, logger: silent, repo: createRepo(cpool) });
    const srv2 = await serve(app2);
    try {
      cpool.n = 0;
      const res = await get(srv2.base, '/api/posts?limit=3');
      assert.equal(cpool.n, 4);
      assert.deepEqual(res.json, (await get(B, '/api/posts?limit=3')).json);
      assertError(await get(srv2.base, '/metrics'), 404, 'not_found');
    } finally {
      await srv2.close();
    }
  });

  await t.test('cache_headers off: no ETag, no 304', async () => {
    const app3 = createApp({ config: config({ API_CACHE_HEADERS: 'false', API_GZIP: 'false' }), pool: cpool, logger: silent, repo: createRepo(cpool) });
    const srv3 = await serve(app3);
    try {
      const res = await get(srv3.base, `/api/posts/${posts[0].id}`, { 'if-none-match': '*', 'accept-encoding': 'gzip' });
      assert.equal(res.status, 200);
      assert.equal(res.headers.etag, undefined);
      assert.equal(res.headers['cache-control'], undefined);
      assert.equal(res.headers['content-encoding'], undefined);
    } finally {
      await srv3.close();
    }
  });
});

test('pool exhausted → 503 service_unavailable with Retry-After: 1', { skip }, async (t) => {
  const pool = new pg.Pool({ connectionString: DB, max: 1, connectionTimeoutMillis: 100 });
  const held = await pool.connect();
  const srv = await serve(createApp({ config: config(), pool, logger: silent }));
  t.after(async () => {
    held.release();
    await srv.close();
    await pool.end();
  });
  for (const path of ['/api/users/1', '/healthz']) {
    const res = await get(srv.base, path);
    assertError(res, 503, 'service_unavailable');
    assert.equal(res.headers['retry-after'], '1');
  }
});

test('database down → /healthz 503 (no PostgreSQL needed)', async (t) => {
  const pool = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', max: 1, connectionTimeoutMillis: 500 });
  const srv = await serve(createApp({ config: config(), pool, logger: silent }));
  t.after(async () => {
    await srv.close();
    await pool.end();
  });
  const res = await get(srv.base, '/healthz');
  assertError(res, 503, 'service_unavailable');
  assert.equal(res.headers['retry-after'], '1');
  assertError(await get(srv.base, '/api/posts'), 503, 'service_unavailable');
});

test('a 500 says only "internal server error"', async (t) => {
  const boom = { query: async () => { throw new Error('secret cause'); }, totalCount: 0, idleCount: 0 };
  const lines = [];
  const logger = require('pino')({ level: 'info' }, { write: (l) => lines.push(l) });
  const srv = await serve(createApp({ config: config(), pool: boom, logger }));
  t.after(() => srv.close());
  const res = await get(srv.base, '/api/users/1');
  assertError(res, 500, 'internal');
  assert.equal(res.json.error.message, 'internal server error');
  assert.doesNotMatch(res.text, /secret/);
  assert.ok(lines.some((l) => l.includes('secret cause')));
});
