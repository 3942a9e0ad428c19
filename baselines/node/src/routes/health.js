'use strict';

const { sendJson } = require('../http');
const { serviceUnavailable, notFound } = require('../errors');
const { reportedKnobs } = require('../config');

function healthRoutes({ repo, knobs, version, metrics, logger }) {
  const knobsReport = reportedKnobs(knobs);
  return {
    healthz: async (req, res) => {
      try {
        await repo.ping();
      } catch (err) {
        logger.warn({ err }, 'health check: database unreachable');
        throw serviceUnavailable();
      }
      sendJson(res, 200, { status: 'ok', database: 'ok', knobs: knobsReport, version });
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
