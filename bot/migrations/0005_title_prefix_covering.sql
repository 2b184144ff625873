-- Autocomplete's first step finds titles by prefix on this index and shows each study's id
-- and title: with both in the index, the answer comes from a few adjacent index pages
-- instead of one table page per study (rows hold whole abstracts). At 1M studies a prefix's
-- 25 suggestions took 1.7 ms at p50 from a cold file cache (4.2 ms p99), now 0.2 (0.9).
-- Import matching by title and year still reads it.
DROP INDEX studies_title_key;
CREATE INDEX studies_title_key ON studies (title_key, year, id, title);
