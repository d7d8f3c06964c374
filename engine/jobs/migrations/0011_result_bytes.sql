-- retention's size rule sums the bytes of every kept result: measured once per job (the files stat'ed by the
-- first sweep after the job is done, again after its results change) and summed from the index, so a steady
-- sweep reads only the new jobs and the ones it removes instead of stat'ing every kept file every hour
ALTER TABLE jobs ADD COLUMN result_bytes INTEGER;
DROP INDEX jobs_kept;
CREATE INDEX jobs_kept ON jobs (finished_at, id, result_bytes) WHERE state = 'done' AND results != '[]';
CREATE INDEX jobs_unmeasured ON jobs (id) WHERE state = 'done' AND results != '[]' AND result_bytes IS NULL;
