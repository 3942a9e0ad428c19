-- The schema of docs/CONTRACT.md. Constraint names are spelled out because `error.rs` maps
-- violations of exactly these constraints to 4xx responses (see `on_constraint`).
CREATE TABLE users (
    id            BIGSERIAL   PRIMARY KEY,
    -- stored trimmed and lower-cased by the API; uniqueness is on that form
    email         TEXT        NOT NULL CONSTRAINT users_email_key UNIQUE,
    name          TEXT        NOT NULL,
    password_hash TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE posts (
    id         BIGSERIAL   PRIMARY KEY,
    author_id  BIGINT      NOT NULL CONSTRAINT posts_author_id_fkey REFERENCES users (id),
    title      TEXT        NOT NULL,
    body       TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- GET /api/posts?limit=N reads the newest posts: an index scan, no sort.
CREATE INDEX posts_created_at_id_idx ON posts (created_at DESC, id DESC);
-- the foreign key's lookups (and any "posts of a user" query) need their own index in Postgres.
CREATE INDEX posts_author_id_idx ON posts (author_id);
