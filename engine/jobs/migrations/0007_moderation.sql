-- members who may not make images: in one server (scope = its id), outside servers ('elsewhere') or anywhere
-- ('global'), until a time (NULL: until lifted)
CREATE TABLE denied (
    scope    TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    until    REAL,
    reason   TEXT NOT NULL DEFAULT '',
    by_whom  TEXT NOT NULL DEFAULT '',
    at       REAL NOT NULL,
    PRIMARY KEY (scope, user_id)
);

-- the moderation log the panel shows: refused prompts, and changes of settings, blocklists and the deny list
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    scope   TEXT NOT NULL,
    actor   TEXT NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE INDEX audit_scope_at ON audit (scope, at);
