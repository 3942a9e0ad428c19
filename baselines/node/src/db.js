'use strict';

// The pool and the queries. node-postgres returns BIGINT as a string; ids are turned back into
// JSON numbers here. Statements are named, so each connection prepares them once (as sqlx's
// statement cache does).

const pg = require('pg');

// How long after query_timeout_ms the client stops waiting (as the Rust API's
// QUERY_TIMEOUT_GRACE): the server's statement_timeout fires first whenever the server is alive,
// so only a server that answers nothing (paused, partitioned) reaches pg's query_timeout — and
// pg then destroys that client instead of returning it to the pool.
const QUERY_TIMEOUT_GRACE_MS = 250;

function createPool(config) {
  const k = config.knobs;
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: k.pool_max,
    min: k.pool_min, // keeps that many idle connections from being reaped; server.js pre-warms them
    connectionTimeoutMillis: k.pool_acquire_timeout_ms, // acquire wait (and connect) → 503
    statement_timeout: k.query_timeout_ms, // the server cancels an overrunning statement (57014 → 503)
    query_timeout: k.query_timeout_ms + QUERY_TIMEOUT_GRACE_MS, // no answer at all → 503
    idleTimeoutMillis: 600_000, // sqlx's default idle_timeout (10 min)
    maxLifetimeSeconds: 1800, // sqlx's default max_lifetime (30 min)
    application_name: 'apibench-node',
  });
  return pool;
}

// Open `n` connections at once and give them back, so the pool starts with pool_min idle.
async function prewarm(pool, n) {
  const clients = await Promise.all(Array.from({ length: n }, () => pool.connect()));
  for (const c of clients) c.release();
}

const USER_COLS = 'id, email, name, created_at';
const POST_COLS = 'id, author_id, title, body, created_at';

const toUser = (r) => ({
  id: Number(r.id),
  email: r.email,
  name: r.name,
  created_at: r.created_at.toISOString(),
});
const toPost = (r) => ({
  id: Number(r.id),
  author_id: Number(r.author_id),
  title: r.title,
  body: r.body,
  created_at: r.created_at.toISOString(),
});

const q = (name, text) => (values) => ({ name, text, values });
const SQL = {
  insertUser: q('insert_user', `INSERT INTO users (email, name, password_hash) VALUES ($1, $2, $3) RETURNING ${USER_COLS}`),
  userById: q('user_by_id', `SELECT ${USER_COLS} FROM users WHERE id = $1`),
  usersByIds: q('users_by_ids', `SELECT ${USER_COLS} FROM users WHERE id = ANY($1::bigint[]) ORDER BY id`),
  insertPost: q('insert_post', `INSERT INTO posts (author_id, title, body) VALUES ($1, $2, $3) RETURNING ${POST_COLS}`),
  postById: q('post_by_id', `SELECT ${POST_COLS} FROM posts WHERE id = $1`),
  latestPosts: q('latest_posts', `SELECT ${POST_COLS} FROM posts ORDER BY created_at DESC, id DESC LIMIT $1`),
};

function createRepo(pool) {
  return {
    async insertUser(email, name, passwordHash) {
      const { rows } = await pool.query(SQL.insertUser([email, name, passwordHash]));
      return toUser(rows[0]);
    },
    async userById(id) {
      const { rows } = await pool.query(SQL.userById([id]));
      return rows.length ? toUser(rows[0]) : null;
    },
    async usersByIds(ids) {
      const { rows } = await pool.query(SQL.usersByIds([ids]));
      return rows.map(toUser);
    },
    async insertPost(authorId, title, body) {
      const { rows } = await pool.query(SQL.insertPost([authorId, title, body]));
      return toPost(rows[0]);
    },
    async postById(id) {
      const { rows } = await pool.query(SQL.postById([id]));
      return rows.length ? toPost(rows[0]) : null;
    },
    async latestPosts(limit) {
      const { rows } = await pool.query(SQL.latestPosts([limit]));
      return rows.map(toPost);
    },
    async ping() {
      await pool.query('SELECT 1');
    },
  };
}

module.exports = { createPool, prewarm, createRepo, QUERY_TIMEOUT_GRACE_MS };
