-- the images each job counts against quotas (engine/quota.py price), so a server's usage is one SUM read
-- from a covering index inside the transaction that admits the next job
ALTER TABLE jobs ADD COLUMN images INTEGER NOT NULL DEFAULT 1;
UPDATE jobs SET images = MAX(1, COALESCE(json_extract(params, '$.count'), 1));
DROP INDEX jobs_guild_created;
CREATE INDEX jobs_quota ON jobs (guild_id, created_at, user_id, state, images);
