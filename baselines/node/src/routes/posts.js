'use strict';

const crypto = require('node:crypto');
const { sendJson, jsonBody } = require('../http');
const { notFound, validationFailed } = require('../errors');
const { parsePathId, parseLimit, validateNewPost, UNKNOWN_AUTHOR } = require('../validate');

const unknownAuthor = () => validationFailed({ author_id: UNKNOWN_AUTHOR });

// Strong ETag: the first 32 hex digits of sha256(body bytes), quoted.
const etagOf = (body) =>
  `"${crypto.createHash('sha256').update(body).digest('hex').slice(0, 32)}"`;

// If-None-Match: `*` or a list of tags; compared weakly (RFC 9110 §13.1.2).
function ifNoneMatchHits(header, etag) {
  if (typeof header !== 'string') return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

function postRoutes({ repo, knobs }) {
  const attachAuthors =
    knobs.posts_strategy === 'n_plus_one'
      ? // 1 + N: one query per post, one after the other.
        async (posts) => {
          const out = [];
          for (const p of posts) out.push({ ...p, author: await repo.userById(String(p.author_id)) });
          return out;
        }
      : // batch: one query for every distinct author.
        async (posts) => {
          if (posts.length === 0) return [];
          const ids = [...new Set(posts.map((p) => String(p.author_id)))];
          const byId = new Map((await repo.usersByIds(ids)).map((u) => [u.id, u]));
          return posts.map((p) => ({ ...p, author: byId.get(p.author_id) ?? null }));
        };

  const cacheControl = `public, max-age=${knobs.cache_max_age_secs}`;

  return {
    create: [
      ...jsonBody,
      async (req, res) => {
        const input = validateNewPost(req.json, req.jsonText);
        if (input.author_id > Number.MAX_SAFE_INTEGER) throw unknownAuthor(); // cannot exist
        let post;
        try {
          post = await repo.insertPost(input.author_id, input.title, input.body);
        } catch (err) {
          if (err && err.code === '23503') throw unknownAuthor();
          throw err;
        }
        sendJson(res, 201, post);
      },
    ],
    list: async (req, res) => {
      const limit = parseLimit(req.query.limit);
      const posts = await attachAuthors(await repo.latestPosts(limit));
      sendJson(res, 200, { posts });
    },
    get: async (req, res) => {
      const id = parsePathId(req.params.id);
      const post = await repo.postById(id);
      if (!post) throw notFound('post not found');
      const body = JSON.stringify(post);
      if (!knobs.cache_headers) return sendJson(res, 200, body);
      const etag = etagOf(body);
      const headers = { 'Cache-Control': cacheControl, ETag: etag };
      if (ifNoneMatchHits(req.headers['if-none-match'], etag)) {
        res.statusCode = 304;
        for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
        return res.end();
      }
      sendJson(res, 200, body, headers);
    },
  };
}

module.exports = { postRoutes, etagOf, ifNoneMatchHits };
