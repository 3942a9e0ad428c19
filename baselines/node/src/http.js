'use strict';

// Small response and request-body helpers shared by the routes.

const express = require('express');
const { unsupportedMediaType, invalidJson } = require('./errors');

const BODY_LIMIT = 64 * 1024; // bytes; more → 413 payload_too_large

// `Content-Type: application/json` exactly — the contract's serialisation, not Express'
// `application/json; charset=utf-8`.
function sendJson(res, status, value, headers) {
  const body = typeof value === 'string' ? value : JSON.stringify(value);
  res.statusCode = status;
  if (headers) for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

// `application/json`, with or without parameters such as charset; case-insensitive (as the
// Rust API: `application/*+json` is not accepted).
function isJsonContentType(header) {
  if (typeof header !== 'string') return false;
  return header.split(';', 1)[0].trim().toLowerCase() === 'application/json';
}

function requireJsonContentType(req, res, next) {
  if (!isJsonContentType(req.headers['content-type'])) return next(unsupportedMediaType());
  next();
}

// Read the raw body (≤ 64 KiB, no Content-Encoding) and parse it ourselves: body-parser's json()
// would turn an empty body into {} and reject a top-level scalar as a syntax error, where the
// contract wants invalid_json and 422.
const readRaw = express.raw({ type: () => true, limit: BODY_LIMIT, inflate: false });
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function parseJsonBody(req, res, next) {
  const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  let text;
  try {
    text = utf8.decode(raw);
  } catch {
    return next(invalidJson('invalid UTF-8'));
  }
  if (text.trim() === '') return next(invalidJson('the body is empty'));
  try {
    req.json = JSON.parse(text);
    req.jsonText = text;
  } catch (err) {
    // V8 quotes the input after `, "`: keep the message, not the client's bytes.
    return next(invalidJson(String(err.message).split(', "')[0]));
  }
  next();
}

const jsonBody = [requireJsonContentType, readRaw, parseJsonBody];

// Only gzip is offered (like tower-http with the compression-gzip feature): narrow the request's
// Accept-Encoding to `gzip` or `identity` before the `compression` middleware negotiates.
function acceptsGzip(header) {
  if (typeof header !== 'string' || header === '') return false;
  let gzip = null;
  let star = null;
  for (const part of header.split(',')) {
    const [coding, ...params] = part.trim().split(';');
    const name = coding.trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/i.exec(p);
      if (m) q = Number(m[1]);
    }
    if (name === 'gzip' || name === 'x-gzip') gzip = q;
    else if (name === '*') star = q;
  }
  if (gzip !== null) return gzip > 0;
  return star !== null && star > 0;
}

function gzipOnly(req, res, next) {
  req.headers['accept-encoding'] = acceptsGzip(req.headers['accept-encoding']) ? 'gzip' : 'identity';
  next();
}

module.exports = { sendJson, jsonBody, isJsonContentType, acceptsGzip, gzipOnly, BODY_LIMIT };
