-- each result's NSFW score from the image safety classifier (engine/safety.py), a JSON list in the order of
-- results; '[]' when no classifier checked the job (also every job from before this migration)
ALTER TABLE jobs ADD COLUMN safety TEXT NOT NULL DEFAULT '[]';
