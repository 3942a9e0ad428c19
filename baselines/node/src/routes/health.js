'use strict';

const { sendJson } = require('../http');
const { serviceUnavailable, notFound } = require('../errors');
const { reportedKnobs } = require('../config');

// `clusterInfo`: in a cluster worker, which one answered and its share of the pool (the
// `knobs` stay the configured totals); absent otherwise, so the single process's body is the
// Rust API's.
function healthRoutes({ repo, knobs, version, metrics, logger, clusterInfo }) {
  const knobsReport = reportedKnobs(knobs);
  return {
    healthz: async (req, res) => {
      try {
        await repo.ping();
      } catch (err) {
        logger.warn({ err }, 'health check: database unreachable');
        throw serviceUnavailable();
      }
      const body = { status: 'ok', database: 'ok', knobs: knobsReport, version };
      if (clusterInfo) body.cluster = clusterInfo;
      sendJson(res, 200, body);
    },
    metrics: async (req, res) => {
      if (!metrics) throw notFound('metrics are disabled');
      const { contentType, body } = await metrics.render();
      res.statusCode = 200;
      res.setHeader('Content-Type', contentType);
      res.setHeader('Content-Length', Buffer.byteLength(body));
      res.end(body);
    },
  };
}

module.exports = { healthRoutes };
