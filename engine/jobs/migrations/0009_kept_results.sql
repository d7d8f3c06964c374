-- retention reads only the done jobs that still have result files, oldest first, a page at a time: rows whose
-- results it already removed (most of a year's history) are not in this index at all
CREATE INDEX jobs_kept ON jobs (finished_at, id) WHERE state = 'done' AND results != '[]';
