'use strict';

// Input checks of docs/CONTRACT.md. Pure functions, unit-tested in test/validate.test.js.

const net = require('node:net');
const url = require('node:url');
const { badRequest, validationFailed, unprocessable } = require('./errors');

const I64_MAX = 2n ** 63n - 1n;

// Rust's `str::trim`: leading and trailing Unicode White_Space. JavaScript's trim() differs on
// two characters (it keeps U+0085 NEL and strips U+FEFF BOM), which made the servers disagree on
// names, emails, `ids` and `limit`; every trim here is this one.
// (A loop, not one regex: `\p{White_Space}+$` backtracks quadratically on long inner runs.)
const WHITE_SPACE = /^\p{White_Space}$/u; // every such character is in the BMP
function trimWhiteSpace(s) {
  let start = 0;
  let end = s.length;
  while (start < end && WHITE_SPACE.test(s[start])) start++;
  while (end > start && WHITE_SPACE.test(s[end - 1])) end--;
  return s.slice(start, end);
}

// A positive integer that fits an i64, written in ASCII digits only (no sign, spaces, exponent),
// as the Rust API's `parse_positive_id`. Returns the decimal string (pg takes it as a BIGINT
// parameter without a round trip through a JS number) or null.
function parsePositiveI64(raw) {
  if (typeof raw !== 'string' || !/^[0-9]+$/.test(raw)) return null;
  const n = BigInt(raw);
  if (n < 1n || n > I64_MAX) return null;
  return n.toString();
}

function parsePathId(raw) {
  const id = parsePositiveI64(raw);
  if (id === null) throw badRequest('id must be a positive integer');
  return id;
}

// A query parameter given twice arrives as an array (Express' "simple" parser); the Rust API's
// serde_urlencoded rejects a duplicate field: both are 400.
function singleQueryValue(raw, name) {
  if (Array.isArray(raw)) throw badRequest(`invalid query string: duplicate field \`${name}\``);
  return raw;
}

// `?ids=1,2,3` → distinct ids (strings) in ascending order; 1..=1000 entries, counted before
// duplicates collapse; entries may carry surrounding spaces.
const MAX_IDS = 1000;
const IDS_MESSAGE = `ids must be a comma-separated list of 1 to ${MAX_IDS} positive integers`;
function parseIds(raw) {
  raw = singleQueryValue(raw, 'ids');
  if (typeof raw !== 'string') throw badRequest(IDS_MESSAGE);
  const parts = raw.split(',');
  if (parts.length > MAX_IDS) throw badRequest(IDS_MESSAGE);
  const ids = new Set();
  for (const p of parts) {
    const id = parsePositiveI64(trimWhiteSpace(p));
    if (id === null) throw badRequest(IDS_MESSAGE);
    ids.add(id);
  }
  return [...ids].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
}

// `?limit=N`, 1..=100, default 20.
function parseLimit(raw) {
  raw = singleQueryValue(raw, 'limit');
  if (raw === undefined) return 20;
  const n = parsePositiveI64(typeof raw === 'string' ? trimWhiteSpace(raw) : undefined);
  if (n !== null && BigInt(n) <= 100n) return Number(n);
  throw badRequest('limit must be an integer from 1 to 100');
}

// Email, as the Rust `validator` crate checks it (HTML5-style local part, RFC 5321 lengths,
// LDH domain labels or an [IP] literal, IDN via punycode), plus the contract's 254 characters.
const EMAIL_USER_RE = /^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+$/i;
const EMAIL_DOMAIN_RE =
  /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;
const EMAIL_LITERAL_RE = /\[([A-Fa-f0-9:.]+)\]$/;

const charCount = (s) => {
  let n = 0;
  for (const _ of s) n++; // code points, like Rust's chars().count()
  return n;
};

function validDomainPart(domain) {
  if (EMAIL_DOMAIN_RE.test(domain)) return true;
  const m = EMAIL_LITERAL_RE.exec(domain);
  return m !== null && net.isIP(m[1]) !== 0;
}

function isValidEmail(email) {
  if (email === '' || charCount(email) > 254) return false;
  const at = email.lastIndexOf('@');
  if (at < 0) return false;
  const user = email.slice(0, at);
  const domain = email.slice(at + 1);
  if (charCount(user) > 64 || charCount(domain) > 255) return false;
  if (!EMAIL_USER_RE.test(user)) return false;
  if (validDomainPart(domain)) return true;
  const ascii = url.domainToASCII(domain);
  return ascii !== '' && validDomainPart(ascii);
}

const MESSAGES = {
  email: 'must be a valid email address',
  password: 'must be 8 to 128 characters',
  name: 'must be 1 to 100 characters',
  title: 'must be 1 to 200 characters',
  body: 'must be 1 to 10000 characters',
  author_id: 'must be a positive integer',
};
// PostgreSQL's text cannot hold U+0000: a stored field with one is a validation failure, not a
// failed INSERT (the Rust API's `storable_text`). Checked after the length, as there.
const NUL_MESSAGE = 'must not contain NUL characters';
const hasNul = (s) => s.includes('\u0000');
const REQUIRED = 'is required';
const UNKNOWN_AUTHOR = 'must reference an existing user';

// Field messages in field-name order (the Rust API keeps them in a BTreeMap), so both servers
// send the same bytes.
function sortedFields(fields) {
  const out = {};
  for (const k of Object.keys(fields).sort()) out[k] = fields[k];
  return out;
}
function failIfAny(fields) {
  if (Object.keys(fields).length > 0) throw validationFailed(sortedFields(fields));
}

// What JSON.parse hides but serde sees: the raw text of each top-level member. Called only on
// text JSON.parse accepted (so it is well-formed); returns Map(key → [raw value text, …]) for a
// top-level object, else null. Keys are decoded (`"em\u0061il"` is `email`).
function topLevelMembers(text) {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const skipString = () => {
    i++; // opening quote
    while (i < n && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++; // closing quote
  };
  const skipValue = () => {
    let depth = 0;
    while (i < n) {
      const c = text[i];
      if (c === '"') {
        skipString();
        continue;
      }
      if (c === '{' || c === '[') depth++;
      else if (c === '}' || c === ']') {
        if (depth === 0) return;
        depth--;
      } else if (c === ',' && depth === 0) return;
      i++;
    }
  };
  ws();
  if (text[i] !== '{') return null;
  i++;
  const members = new Map();
  for (;;) {
    ws();
    if (i >= n || text[i] === '}') break;
    if (text[i] === ',') {
      i++;
      continue;
    }
    const keyStart = i;
    skipString();
    const key = JSON.parse(text.slice(keyStart, i));
    ws();
    i++; // ':'
    ws();
    const valueStart = i;
    skipValue();
    const raw = text.slice(valueStart, i).trimEnd();
    if (members.has(key)) members.get(key).push(raw);
    else members.set(key, [raw]);
  }
  return members;
}

// serde rejects a known field given twice, and an i64 field written as a float (`1.0`, `1e0`)
// or beyond the i64 range: 422 like any other shape error.
function checkRawMembers(text, known, integerFields = []) {
  if (typeof text !== 'string') return;
  const members = topLevelMembers(text);
  if (members === null) return;
  for (const name of known) {
    const raws = members.get(name);
    if (!raws) continue;
    if (raws.length > 1) throw unprocessable(`duplicate field \`${name}\``);
    if (integerFields.includes(name) && /^-?[0-9]/.test(raws[0])) {
      if (/[.eE]/.test(raws[0])) throw unprocessable(`${name}: expected an integer, got ${raws[0]}`);
      const v = BigInt(raws[0]);
      if (v > I64_MAX || v < -I64_MAX - 1n) throw unprocessable(`${name}: ${raws[0]} does not fit an i64`);
    }
  }
}

// The body must be a JSON object; each known field is absent/null (then "is required", a
// validation failure, as serde reads an `Option`) or of its JSON type. Anything else is the
// wrong shape → 422.
function requireObject(body) {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw unprocessable('expected a JSON object');
  }
}

function stringField(body, name) {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw unprocessable(`${name}: expected a string`);
  return v;
}

// author_id: a JSON integer that fits an i64 (as serde would accept it); its sign is a
// validation matter, its type a shape matter.
function integerField(body, name) {
  const v = body[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || Math.abs(v) > 2 ** 63) {
    throw unprocessable(`${name}: expected an integer`);
  }
  return v;
}

const lengthOk = (s, min, max) => {
  const n = charCount(s);
  return n >= min && n <= max;
};

// → {email, password, name} normalised (email trimmed + lower-cased, name trimmed)
// `text` (optional) is the raw JSON the body was parsed from.
function validateNewUser(body, text) {
  requireObject(body);
  checkRawMembers(text, ['email', 'password', 'name']);
  const email = stringField(body, 'email');
  const password = stringField(body, 'password');
  const name = stringField(body, 'name');
  const fields = {};
  if (email === undefined) fields.email = REQUIRED;
  else if (!isValidEmail(trimWhiteSpace(email))) fields.email = MESSAGES.email;
  if (password === undefined) fields.password = REQUIRED;
  else if (!lengthOk(password, 8, 128)) fields.password = MESSAGES.password;
  if (name === undefined) fields.name = REQUIRED;
  else if (!lengthOk(trimWhiteSpace(name), 1, 100)) fields.name = MESSAGES.name;
  else if (hasNul(name)) fields.name = NUL_MESSAGE;
  failIfAny(fields);
  return { email: trimWhiteSpace(email).toLowerCase(), password, name: trimWhiteSpace(name) };
}

// → {author_id (number), title, body}
function validateNewPost(body, text) {
  requireObject(body);
  checkRawMembers(text, ['author_id', 'title', 'body'], ['author_id']);
  const authorId = integerField(body, 'author_id');
  const title = stringField(body, 'title');
  const postBody = stringField(body, 'body');
  const fields = {};
  if (authorId === undefined) fields.author_id = REQUIRED;
  else if (authorId < 1) fields.author_id = MESSAGES.author_id;
  if (title === undefined) fields.title = REQUIRED;
  else if (!lengthOk(title, 1, 200)) fields.title = MESSAGES.title;
  else if (hasNul(title)) fields.title = NUL_MESSAGE;
  if (postBody === undefined) fields.body = REQUIRED;
  else if (!lengthOk(postBody, 1, 10000)) fields.body = MESSAGES.body;
  else if (hasNul(postBody)) fields.body = NUL_MESSAGE;
  failIfAny(fields);
  return { author_id: authorId, title, body: postBody };
}

module.exports = {
  parsePositiveI64,
  parsePathId,
  parseIds,
  parseLimit,
  isValidEmail,
  validateNewUser,
  validateNewPost,
  MESSAGES,
  REQUIRED,
  NUL_MESSAGE,
  UNKNOWN_AUTHOR,
  sortedFields,
  topLevelMembers,
  MAX_IDS,
  trimWhiteSpace,
};
