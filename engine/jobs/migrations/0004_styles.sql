-- named style presets the operator defines in the panel (engine/styles.py): a template around {prompt},
-- a negative prompt added to the user's, and optional defaults for guidance and steps (NULL: none)
CREATE TABLE styles (
    name        TEXT PRIMARY KEY,
    template    TEXT NOT NULL,
    negative    TEXT NOT NULL DEFAULT '',
    guidance    REAL,
    steps       INTEGER,
    updated_at  REAL NOT NULL
);
