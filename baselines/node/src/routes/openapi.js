'use strict';

// GET /openapi.json: the contract's OpenAPI document. It is generated from the Rust API's types
// and committed as docs/openapi.json (api/tests/openapi.rs keeps it current); this server sends
// that file as it is, so both targets serve the same bytes.

const fs = require('node:fs');
const path = require('node:path');
const { sendJson } = require('../http');

const DOCUMENT_PATH = path.join(__dirname, '..', '..', '..', '..', 'docs', 'openapi.json');

function openapiRoutes({ documentPath = DOCUMENT_PATH } = {}) {
  let document = null; // read on first use: a missing file is a 500 there, not a failed start
  return {
    openapi: async (req, res) => {
      if (document === null) document = await fs.promises.readFile(documentPath, 'utf8');
      sendJson(res, 200, document);
    },
  };
}

module.exports = { openapiRoutes, DOCUMENT_PATH };
