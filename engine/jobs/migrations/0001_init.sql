-- jobs: the source of truth for every generation request
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    state         TEXT    NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    priority      INTEGER NOT NULL DEFAULT 0,
    source        TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    user_name     TEXT    NOT NULL DEFAULT '',
    guild_id      TEXT,
    channel_id    TEXT,
    delivery      TEXT    NOT NULL DEFAULT '{}',
    params        TEXT    NOT NULL,
    created_at    REAL    NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    gen_seconds   REAL,
    results       TEXT    NOT NULL DEFAULT '[]',
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    delivered_at  REAL
);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_user ON jobs (user_id, state);
CREATE INDEX jobs_undelivered ON jobs (state, delivered_at);

-- operator defaults: scope 'global' or a guild id; data holds only the overridden fields
CREATE TABLE defaults (
    scope       TEXT PRIMARY KEY,
    data        TEXT NOT NULL,
    updated_at  REAL NOT NULL
);

-- prompt blocklist words: scope 'global' or a guild id
CREATE TABLE blocklist (
    scope  TEXT NOT NULL,
    word   TEXT NOT NULL,
    PRIMARY KEY (scope, word)
);

-- small facts the service keeps between runs (command-definition hash, ...)
CREATE TABLE kv (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
