-- the file to deliver for each result (JSON list, same order as results): its WebP/JPEG copy, or
-- the PNG itself with DELIVERY_FORMAT=png. Rows saved before this column keep '[]' and deliver
-- their PNGs.
ALTER TABLE jobs ADD COLUMN deliveries TEXT NOT NULL DEFAULT '[]';
