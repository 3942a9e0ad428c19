'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const v = require('../src/validate');
const { ApiError } = require('../src/errors');
const { isJsonContentType, acceptsGzip } = require('../src/http');
const { etagOf, ifNoneMatchHits } = require('../src/routes/posts');

const fails = (fn, status, code) =>
  assert.throws(fn, (e) => e instanceof ApiError && e.status === status && e.code === code);

function fieldsOf(fn) {
  try {
    fn();
  } catch (e) {
    assert.equal(e.code, 'validation_failed');
    return e.fields;
  }
  assert.fail('expected a validation failure');
}

test('path ids: positive i64 in ASCII digits', () => {
  assert.equal(v.parsePathId('1'), '1');
  assert.equal(v.parsePathId('007'), '7');
  assert.equal(v.parsePathId('9223372036854775807'), '9223372036854775807');
  for (const bad of ['0', '-1', '+1', '1.5', 'abc', '', ' 1', '1e3', '9223372036854775808', '99999999999999999999', '0x10']) {
    fails(() => v.parsePathId(bad), 400, 'bad_request');
  }
});

test('ids list: trimmed, deduplicated, sorted, 1..=1000 entries', () => {
  assert.deepEqual(v.parseIds('3,1,3, 2'), ['1', '2', '3']);
  assert.deepEqual(v.parseIds('10,9'), ['9', '10']);
  for (const bad of [undefined, '', ',,,', '1,,2', 'a', '0', '-1', '1.5', '99999999999999999999', ['1', '2']]) {
    fails(() => v.parseIds(bad), 400, 'bad_request');
  }
  assert.equal(v.parseIds(Array(1000).fill('1').join(',')).length, 1);
  fails(() => v.parseIds(Array(1001).fill('1').join(',')), 400, 'bad_request');
});

test('limit: default 20, 1..=100', () => {
  assert.equal(v.parseLimit(undefined), 20);
  assert.equal(v.parseLimit('1'), 1);
  assert.equal(v.parseLimit('100'), 100);
  assert.equal(v.parseLimit(' 5 '), 5);
  for (const bad of ['0', '101', 'abc', '', '-5', '1e2', '+5', ['1', '2']]) {
    fails(() => v.parseLimit(bad), 400, 'bad_request');
  }
});

test('emails as the validator crate sees them', () => {
  for (const ok of ['a@b.c', 'a@b', 'first.last+tag@example.co.uk', 'x@[127.0.0.1]', 'x@[::1]', 'a@bücher.de', "o'neil@example.com"]) {
    assert.ok(v.isValidEmail(ok), ok);
  }
  const long = 'a'.repeat(64) + '@' + 'b'.repeat(63) + '.' + 'c'.repeat(63) + '.' + 'd'.repeat(63);
  for (const bad of ['', 'plain', '@b.c', 'a@', 'a b@c.d', 'a@b..c', 'a@-b.c', 'a@b_c.d', 'a@[1.2.3]', 'a'.repeat(65) + '@b.c', long]) {
    assert.ok(!v.isValidEmail(bad), bad);
  }
});

test('new user: normalised on success', () => {
  assert.deepEqual(
    v.validateNewUser({ email: '  Ann@Example.COM ', password: 'secret123', name: ' Ann ', extra: 1 }),
    { email: 'ann@example.com', password: 'secret123', name: 'Ann' },
  );
});

test('new user: every failing field at once, sorted, missing = "is required"', () => {
  const f = fieldsOf(() => v.validateNewUser({ email: 'nope', password: 'short' }));
  assert.deepEqual(Object.keys(f), ['email', 'name', 'password']);
  assert.equal(f.email, 'must be a valid email address');
  assert.equal(f.password, 'must be 8 to 128 characters');
  assert.equal(f.name, 'is required');
  const all = fieldsOf(() => v.validateNewUser({ email: null }));
  assert.deepEqual(all, { email: 'is required', name: 'is required', password: 'is required' });
  assert.equal(fieldsOf(() => v.validateNewUser({ email: 'a@b.c', password: 'x'.repeat(129), name: 'A' })).password, 'must be 8 to 128 characters');
  assert.equal(fieldsOf(() => v.validateNewUser({ email: 'a@b.c', password: 'secret123', name: '   ' })).name, 'must be 1 to 100 characters');
  assert.equal(fieldsOf(() => v.validateNewUser({ email: 'a@b.c', password: 'secret123', name: 'n'.repeat(101) })).name, 'must be 1 to 100 characters');
  // characters, not UTF-16 units or bytes
  assert.ok(v.validateNewUser({ email: 'a@b.c', password: '😀'.repeat(8), name: '😀'.repeat(100) }));
  const email255 = 'a'.repeat(60) + '@' + Array(4).fill('b'.repeat(47)).join('.') + '.cc';
  assert.ok(email255.length > 254);
  assert.equal(fieldsOf(() => v.validateNewUser({ email: email255, password: 'secret123', name: 'A' })).email, 'must be a valid email address');
});

test('new user: wrong JSON shape is 422', () => {
  for (const body of [[], [1], 'x', 5, null, true]) fails(() => v.validateNewUser(body), 422, 'unprocessable_entity');
  for (const body of [{ email: 5 }, { password: [] }, { name: {} }, { email: true }]) {
    fails(() => v.validateNewUser(body), 422, 'unprocessable_entity');
  }
});

test('new post', () => {
  assert.deepEqual(v.validateNewPost({ author_id: 3, title: 't', body: 'b' }), { author_id: 3, title: 't', body: 'b' });
  assert.deepEqual(fieldsOf(() => v.validateNewPost({})), { author_id: 'is required', body: 'is required', title: 'is required' });
  assert.deepEqual(fieldsOf(() => v.validateNewPost({ author_id: 0, title: '', body: 'x'.repeat(10001) })), {
    author_id: 'must be a positive integer',
    body: 'must be 1 to 10000 characters',
    title: 'must be 1 to 200 characters',
  });
  assert.equal(fieldsOf(() => v.validateNewPost({ author_id: -4, title: 't', body: 'b' })).author_id, 'must be a positive integer');
  for (const body of [{ author_id: '1' }, { author_id: 1.5 }, { author_id: 1e20 }, { title: 3 }, { body: false }, []]) {
    fails(() => v.validateNewPost(body), 422, 'unprocessable_entity');
  }
});

test('content types, gzip negotiation, etags', () => {
  assert.ok(isJsonContentType('application/json'));
  assert.ok(isJsonContentType('Application/JSON; charset=utf-8'));
  for (const bad of [undefined, '', 'text/plain', 'application/x-www-form-urlencoded', 'application/problem+json', 'application/jsonx']) {
    assert.ok(!isJsonContentType(bad), String(bad));
  }
  assert.ok(acceptsGzip('gzip, deflate, br'));
  assert.ok(acceptsGzip('*'));
  assert.ok(!acceptsGzip('br'));
  assert.ok(!acceptsGzip('gzip;q=0, br'));
  assert.ok(!acceptsGzip(undefined));
  const tag = etagOf('{}');
  assert.match(tag, /^"[0-9a-f]{32}"$/);
  assert.equal(tag, '"44136fa355b3678a1146ad16f7e8649e"'); // sha256("{}")
  assert.ok(ifNoneMatchHits(tag, tag));
  assert.ok(ifNoneMatchHits(`"x", W/${tag}`, tag));
  assert.ok(ifNoneMatchHits('*', tag));
  assert.ok(!ifNoneMatchHits('"abc"', tag));
  assert.ok(!ifNoneMatchHits(undefined, tag));
});

test('what serde sees in the raw text: duplicates, floats, i64 overflow → 422', () => {
  const m = v.topLevelMembers('{ "a" : 1.0 , "b":{"x":[1,"}",{}]}, "em\\u0061il":"q\\"", "a": -2e3 }');
  assert.deepEqual([...m.entries()], [['a', ['1.0', '-2e3']], ['b', ['{"x":[1,"}",{}]}']], ['email', ['"q\\""']]]);
  assert.equal(v.topLevelMembers('[1]'), null);
  const user = (text) => v.validateNewUser(JSON.parse(text), text);
  const postOf = (text) => v.validateNewPost(JSON.parse(text), text);
  fails(() => user('{"email":"a@b.c","email":"d@e.f","password":"secret123","name":"A"}'), 422, 'unprocessable_entity');
  fails(() => user('{"email":"a@b.c","em\\u0061il":"d@e.f","password":"secret123","name":"A"}'), 422, 'unprocessable_entity');
  assert.ok(user('{"email":"a@b.c","password":"secret123","name":"A","x":1,"x":2}')); // unknown fields may repeat
  for (const n of ['1.0', '1e0', '1E2', '-0.0', '9223372036854775808', '-9223372036854775809']) {
    fails(() => postOf(`{"author_id":${n},"title":"t","body":"b"}`), 422, 'unprocessable_entity');
  }
  assert.equal(postOf('{"author_id":9223372036854775807,"title":"t","body":"b"}').author_id, 2 ** 63);
  assert.equal(postOf('{"author_id": 12 ,"title":"t","body":"b"}').author_id, 12);
  assert.deepEqual(fieldsOf(() => postOf('{"author_id":-9223372036854775808,"title":"t","body":"b"}')), { author_id: 'must be a positive integer' });
});
