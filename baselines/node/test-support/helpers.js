'use strict';

// Test helpers (outside test/, so `node --test` does not run this file as a test): a throwaway schema in the DATABASE_URL database, an app
// served on an ephemeral port, the server as a child process, and one HTTP request with its timing.

const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');
const { spawn } = require('node:child_process');
const pg = require('pg');

const ROOT = path.join(__dirname, '..');
const MIGRATIONS = path.join(ROOT, '..', '..', 'api', 'migrations');

// The schema of docs/CONTRACT.md, for when the Rust API's migrations are not beside us.
const FALLBACK_SCHEMA = `
CREATE TABLE users (id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL CONSTRAINT users_email_key UNIQUE,
  name TEXT NOT NULL, password_hash TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE posts (id BIGSERIAL PRIMARY KEY,
  author_id BIGINT NOT NULL CONSTRAINT posts_author_id_fkey REFERENCES users (id),
  title TEXT NOT NULL, body TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX posts_created_at_id_idx ON posts (created_at DESC, id DESC);
CREATE INDEX posts_author_id_idx ON posts (author_id);`;

function schemaSql() {
  try {
    const files = fs.readdirSync(MIGRATIONS).filter((f) => f.endsWith('.sql')).sort();
    if (files.length > 0) return files.map((f) => fs.readFileSync(path.join(MIGRATIONS, f), 'utf8')).join('\n');
  } catch {
    // fall through
  }
  return FALLBACK_SCHEMA;
}

// A fresh schema (search_path) in the test database; drop() removes it.
async function freshSchema(databaseUrl) {
  const name = `apibench_node_test_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${name}`);
  await admin.query(`SET search_path TO ${name}`);
  await admin.query(schemaSql());
  return {
    name,
    poolOptions: { connectionString: databaseUrl, options: `-c search_path=${name}` },
    async drop() {
      await admin.query(`DROP SCHEMA ${name} CASCADE`);
      await admin.end();
    },
  };
}

async function serve(app) {
  const server = http.createServer(app);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return {
    base,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

// Runs `node src/server.js` with `env`; resolves once it printed its listening line (or exited).
// `stdin: 'pipe'` keeps a pipe to its stdin (child.stdin), e.g. for API_EXIT_ON_STDIN_EOF;
// `ownGroup` starts it in a process group of its own (as apibench does: signal it with
// process.kill(-child.pid, …)).
function startServer(env, { stdin = 'ignore', ownGroup = false } = {}) {
  const child = spawn(process.execPath, [path.join(ROOT, 'src', 'server.js')], {
    env: { PATH: process.env.PATH, ...env },
    stdio: [stdin, 'pipe', 'pipe'],
    detached: ownGroup,
  });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = /^listening on (http:\/\/\S+)$/m.exec(stderr);
      if (m) resolve({ url: m[1] });
    });
    exited.then((r) => resolve({ exit: r }));
  });
  return { child, ready, exited, output: () => ({ stdout, stderr }) };
}

// One HTTP request: {status, headers, text, json, ms}. `agent: false` for a connection of its own.
const REQUEST_PATIENCE_MS = 20_000; // far above every timeout under test: hitting it is a hang

function request(base, method, urlPath, { body, agent } = {}) {
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} : { 'content-type': 'application/json' };
    const req = http.request(`${base}${urlPath}`, { method, headers, agent, timeout: REQUEST_PATIENCE_MS }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        resolve({ status: res.statusCode, headers: res.headers, text, json, ms });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_PATIENCE_MS} ms (a hang?)`)));
    req.on('error', reject);
    if (body !== undefined) req.write(JSON.stringify(body));
    req.end();
  });
}

module.exports = { freshSchema, serve, startServer, schemaSql, request };
