-- every request-path query on an index (a year of a busy bot is about a million rows):
-- the member's picture a job starts from (deleting a job, retention) without reading every row's parameters
CREATE INDEX jobs_upload ON jobs (json_extract(params, '$.init_image'))
    WHERE json_extract(params, '$.init_image') IS NOT NULL;
-- finished jobs by time (throughput at start, the statistics of the last hour)
CREATE INDEX jobs_finished ON jobs (state, finished_at);
