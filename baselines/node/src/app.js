'use strict';

// Build the Express app from the config, a pg pool (or anything with the repo's methods) and a
// logger. No socket is bound here; server.js listens. Tests build it against their own pool.
// `clusterInfo` ({workers, slot, pid, pool_max, pool_min}) only in a cluster worker: /healthz
// reports it and /metrics asks the primary for the sum over all workers.

const express = require('express');
const compression = require('compression');
const { createRepo } = require('./db');
const { createMetrics } = require('./metrics');
const { sendJson, gzipOnly } = require('./http');
const { errorBody, toApiError, notFound, methodNotAllowed } = require('./errors');
const { userRoutes, makeHasher } = require('./routes/users');
const { postRoutes } = require('./routes/posts');
const { healthRoutes } = require('./routes/health');
const { openapiRoutes } = require('./routes/openapi');
const { version } = require('../package.json');

function createApp({ config, pool, logger, repo = createRepo(pool), hashPassword, clusterInfo = null }) {
  const { knobs } = config;
  const metrics = knobs.metrics ? createMetrics(pool, { clusterWorker: clusterInfo !== null }) : null;
  const app = express();
  app.set('x-powered-by', false);
  app.set('etag', false); // the only ETag is the contract's, on GET /api/posts/{id}
  app.set('strict routing', true); // `/api/users/` is not `/api/users` (as in axum)
  app.set('case sensitive routing', true);
  app.set('query parser', 'simple');

  // Metrics and the per-request debug line; `req.endpoint` is set by the matched route.
  const debugEnabled = logger.isLevelEnabled('debug');
  if (metrics || debugEnabled) {
    app.use((req, res, next) => {
      const start = process.hrtime.bigint();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        const seconds = Number(process.hrtime.bigint() - start) / 1e9;
        const endpoint = req.endpoint || 'unmatched';
        if (metrics) metrics.observe(endpoint, req.method, res.statusCode, seconds);
        if (debugEnabled) {
          logger.debug(
            { method: req.method, path: req.originalUrl, endpoint, status: res.statusCode, duration_ms: seconds * 1000 },
            'request',
          );
        }
      };
      res.on('finish', finish);
      res.on('close', finish);
      next();
    });
  }

  if (knobs.gzip) {
    app.use(gzipOnly);
    app.use(compression({ threshold: knobs.gzip_min_bytes })); // the Rust API's gzip_min_bytes
  }

  const users = userRoutes({ repo, hashPassword: hashPassword || makeHasher(knobs) });
  const posts = postRoutes({ repo, knobs });
  const health = healthRoutes({ repo, knobs, version, metrics, logger, clusterInfo });
  const openapi = openapiRoutes();

  // One route per template; methods not listed → 405 with Allow (in registration order, as
  // axum lists them: `POST,GET,HEAD`).
  const templates = []; // [RegExp, template]: to label requests that fail before routing
  function route(template, handlers) {
    const path = template.replace(/\{(\w+)\}/g, ':$1');
    templates.push([new RegExp(`^${template.replace(/\{\w+\}/g, '[^/]+')}$`), template]);
    const allow = Object.keys(handlers)
      .flatMap((m) => (m === 'get' ? ['GET', 'HEAD'] : [m.toUpperCase()]))
      .join(',');
    const r = app.route(path);
    r.all((req, res, next) => {
      req.endpoint = template;
      next();
    });
    for (const [method, handler] of Object.entries(handlers)) r[method](handler);
    r.all((req, res, next) => next(methodNotAllowed(allow)));
  }

  route('/api/users', { post: users.create, get: users.list });
  route('/api/users/{id}', { get: users.get });
  route('/api/posts', { post: posts.create, get: posts.list });
  route('/api/posts/{id}', { get: posts.get });
  route('/healthz', { get: health.healthz });
  route('/openapi.json', { get: openapi.openapi });
  if (metrics) route('/metrics', { get: health.metrics });

  app.use((req, res, next) => next(notFound('no such route')));

  // Every error leaves as the contract's JSON shape; causes of 500/503 only in the log.
  // eslint-disable-next-line no-unused-vars
  app.use((err, req, res, next) => {
    const apiErr = toApiError(err);
    if (!req.endpoint) {
      // e.g. a path parameter that is not valid percent-encoding: Express fails while matching
      const hit = templates.find(([re]) => re.test(req.path));
      if (hit) req.endpoint = hit[1];
    }
    if (apiErr.status >= 500) {
      const level = apiErr.status === 500 ? 'error' : 'warn';
      logger[level]({ err, method: req.method, path: req.originalUrl }, apiErr.message);
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const h of res.getHeaderNames()) res.removeHeader(h);
    sendJson(res, apiErr.status, errorBody(apiErr), apiErr.headers);
  });

  return app;
}

module.exports = { createApp };
