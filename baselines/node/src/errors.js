'use strict';

// The one error shape of docs/CONTRACT.md:
//   {"error": {"code": "...", "message": "...", "fields": {...}}}   (fields only for validation_failed)
// Handlers throw ApiError; the error middleware in app.js turns anything else into a 503/500.

class ApiError extends Error {
  constructor(status, code, message, { fields, headers } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.fields = fields;
    this.headers = headers;
  }
}

const badRequest = (message) => new ApiError(400, 'bad_request', message);
const validationFailed = (fields) =>
  new ApiError(400, 'validation_failed', 'request validation failed', { fields });
const invalidJson = (detail) =>
  new ApiError(400, 'invalid_json', `request body is not valid JSON${detail ? `: ${detail}` : ''}`);
const unprocessable = (detail) =>
  new ApiError(422, 'unprocessable_entity', `request body has the wrong shape: ${detail}`);
const notFound = (message = 'not found') => new ApiError(404, 'not_found', message);
const methodNotAllowed = (allow) =>
  new ApiError(405, 'method_not_allowed', 'method not allowed', {
    headers: allow ? { Allow: allow } : undefined,
  });
const emailTaken = () => new ApiError(409, 'email_taken', 'email is already registered');
const payloadTooLarge = () =>
  new ApiError(413, 'payload_too_large', 'request body exceeds 65536 bytes');
const unsupportedMediaType = () =>
  new ApiError(415, 'unsupported_media_type', 'expected Content-Type: application/json');
const serviceUnavailable = (message = 'service temporarily unavailable') =>
  new ApiError(503, 'service_unavailable', message, { headers: { 'Retry-After': '1' } });
const internal = () => new ApiError(500, 'internal', 'internal server error');

function errorBody(err) {
  const error = { code: err.code, message: err.message };
  if (err.code === 'validation_failed') error.fields = err.fields || {};
  return JSON.stringify({ error });
}

// SQLSTATE classes that mean "the database is not there" rather than "the query is wrong":
// 08 connection exception, 53 insufficient resources, 57P0x shutdown / cannot connect now, and
// 57014 query_canceled (statement_timeout, the server side of query_timeout_ms). The Rust API
// maps the same set (api/src/error.rs).
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0|57014$)/;
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND',
  'EAI_AGAIN', 'EPIPE', 'ENOENT',
]);

// Is this error from pg a pool-acquire timeout or an unreachable database?
function isUnavailable(err) {
  if (!err) return false;
  if (typeof err.message === 'string') {
    if (err.message.includes('timeout exceeded when trying to connect')) return true;
    if (err.message.includes('Connection terminated')) return true;
    if (err.message.includes('Cannot use a pool after calling end')) return true;
    // pg's query_timeout: the server did not answer within query_timeout_ms + grace.
    if (err.message === 'Query read timeout') return true;
    // A client whose connection already failed (e.g. its session was terminated).
    if (err.message.includes('is not queryable')) return true;
  }
  if (typeof err.code === 'string') {
    if (UNAVAILABLE_ERRNO.has(err.code)) return true;
    if (/^[0-9A-Z]{5}$/.test(err.code) && UNAVAILABLE_SQLSTATE.test(err.code)) return true;
  }
  if (Array.isArray(err.errors)) return err.errors.some(isUnavailable); // AggregateError (v4+v6)
  return false;
}

// Anything thrown → ApiError.
function toApiError(err) {
  if (err instanceof ApiError) return err;
  if (isUnavailable(err)) {
    return serviceUnavailable();
  }
  // Errors from Express / body-parser carry `type` and a status.
  switch (err && err.type) {
    case 'entity.too.large':
      return payloadTooLarge();
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return unsupportedMediaType();
    case 'entity.parse.failed':
    case 'entity.verify.failed':
      return invalidJson();
    case 'request.aborted':
    case 'request.size.invalid':
      return new ApiError(400, 'bad_request', 'request body could not be read');
    default:
      break;
  }
  // Express' own 4xx (e.g. a malformed percent-encoding in a path parameter).
  const status = err && (err.status || err.statusCode);
  if (Number.isInteger(status) && status >= 400 && status < 500) {
    if (status === 404) return notFound();
    if (status === 413) return payloadTooLarge();
    if (status === 415) return unsupportedMediaType();
    if (err instanceof URIError || /decode param/i.test(String(err.message))) {
      return badRequest('invalid path: a path parameter is not valid percent-encoded UTF-8');
    }
    return badRequest('bad request');
  }
  return internal();
}

module.exports = {
  ApiError,
  badRequest,
  validationFailed,
  invalidJson,
  unprocessable,
  notFound,
  methodNotAllowed,
  emailTaken,
  payloadTooLarge,
  unsupportedMediaType,
  serviceUnavailable,
  internal,
  errorBody,
  isUnavailable,
  toApiError,
};
