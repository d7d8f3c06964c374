-- quotas count a server's images of the current day: find them without scanning every job
CREATE INDEX jobs_guild_created ON jobs (guild_id, created_at);
