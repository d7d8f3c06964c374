-- a member's own defaults for their requests (/prefer): a partial set of request fields as JSON, one row per
-- member who set any
CREATE TABLE member_prefs (
    user_id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL
);
