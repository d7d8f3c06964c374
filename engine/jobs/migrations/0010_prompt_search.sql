-- History's prompt search on a trigram full-text index (any substring of three characters or more), so a
-- search stays in milliseconds with a year of jobs instead of folding every row's prompt. The prompt is stored
-- folded (NFKC + casefold, the store's casefold()) the way searches are folded.
CREATE VIRTUAL TABLE jobs_text USING fts5(prompt, tokenize = 'trigram');
INSERT INTO jobs_text (rowid, prompt) SELECT id, casefold(json_extract(params, '$.prompt')) FROM jobs;
CREATE TRIGGER jobs_text_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_text (rowid, prompt) VALUES (new.id, casefold(json_extract(new.params, '$.prompt')));
END;
CREATE TRIGGER jobs_text_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM jobs_text WHERE rowid = old.id;
END;
