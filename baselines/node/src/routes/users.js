'use strict';

const argon2 = require('@node-rs/argon2');
const { sendJson, jsonBody } = require('../http');
const { emailTaken, notFound } = require('../errors');
const { parsePathId, parseIds, validateNewUser } = require('../validate');

// argon2id, PHC string output, cost from the argon2 knobs (runs on libuv's thread pool).
function makeHasher(knobs) {
  const options = {
    algorithm: argon2.Algorithm.Argon2id,
    version: argon2.Version.V0x13,
    memoryCost: knobs.argon2_memory_kib,
    timeCost: knobs.argon2_iterations,
    parallelism: knobs.argon2_parallelism,
    outputLen: 32,
  };
  return (password) => argon2.hash(password, options);
}

function userRoutes({ repo, hashPassword }) {
  return {
    create: [
      ...jsonBody,
      async (req, res) => {
        const input = validateNewUser(req.json, req.jsonText);
        const hash = await hashPassword(input.password);
        let user;
        try {
          user = await repo.insertUser(input.email, input.name, hash);
        } catch (err) {
          if (err && err.code === '23505') throw emailTaken();
          throw err;
        }
        sendJson(res, 201, user);
      },
    ],
    list: async (req, res) => {
      const ids = parseIds(req.query.ids);
      const users = await repo.usersByIds(ids);
      sendJson(res, 200, { users });
    },
    get: async (req, res) => {
      const id = parsePathId(req.params.id);
      const user = await repo.userById(id);
      if (!user) throw notFound('user not found');
      sendJson(res, 200, user);
    },
  };
}

module.exports = { userRoutes, makeHasher };
