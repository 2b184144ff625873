-- Links are links (issue 12): a stored url is http(s):// with a host, at most 512 characters,
-- with no white space, control characters or characters a URL cannot hold; the importers keep
-- only such links (bot.text.normalise_url). Rows written before are brought in line: a bare
-- "www." address gets https://, anything else that is not such a link is dropped (the card
-- then links the DOI or PMID, as for a study without a url).
UPDATE studies SET url = 'https://' || url
WHERE url IS NOT NULL AND lower(substr(url, 1, 4)) = 'www.' AND length(url) <= 504;
UPDATE studies SET url = NULL
WHERE url IS NOT NULL AND (
    length(url) > 512
    OR NOT (lower(substr(url, 1, 7)) = 'http://' OR lower(substr(url, 1, 8)) = 'https://')
    -- the host: something before the first "/", "?" or "#" after the scheme
    OR substr(url, instr(url, '://') + 3, 1) IN ('', '/', '?', '#', '.', ':', '@')
    OR url GLOB ('*[' || char(32, 9, 10, 13, 11, 12, 1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 16, 17,
                             18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127)
                 || '<>"\^`{|}]*')
);
