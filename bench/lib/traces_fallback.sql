-- Inline fallback for scripts/gen_traces.py (used only when the generator is missing or
-- fails): :ntraces traces shaped like the generator's `traces` table (id text primary
-- key; input, output, metadata jsonb), input + output together roughly :payload_bytes
-- bytes of JSON text. Message text is md5 hex, so it barely compresses and the documents
-- are TOASTed out of line like real traces. Ids are uuid-shaped, not row numbers.
--   psql -v ntraces=2000 -v payload_bytes=8192 -f traces_fallback.sql
\set ON_ERROR_STOP 1
-- one message below is ~ 300 bytes of JSON text; input and output get half each
SELECT greatest(1, round(:payload_bytes / 2 / 300.0))::int AS msgs \gset

DROP TABLE IF EXISTS traces CASCADE;
CREATE TABLE traces (
  id          text PRIMARY KEY,
  "timestamp" timestamptz,
  name        text,
  user_id     text,
  session_id  text,
  input       jsonb,
  output      jsonb,
  metadata    jsonb
);

INSERT INTO traces (id, "timestamp", name, user_id, session_id, input, output, metadata)
SELECT regexp_replace(md5('trace:' || i), '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\1-\2-\3-\4-\5'),
       timestamptz '2025-01-01' + i * interval '1 minute',
       'agent-run',
       'user-' || (i % 97),
       md5('session:' || (i % 301)),
       jsonb_build_object('messages', (
         SELECT jsonb_agg(jsonb_build_object(
                  'role', CASE WHEN m = 1 THEN 'system' ELSE 'user' END,
                  'content', (SELECT string_agg(md5(i || ':in:' || m || ':' || k), ' ')
                              FROM generate_series(1, 8) k)) ORDER BY m)
         FROM generate_series(1, :msgs) m)),
       jsonb_build_object('messages', (
         SELECT jsonb_agg(jsonb_build_object(
                  'role', 'assistant',
                  'content', (SELECT string_agg(md5(i || ':out:' || m || ':' || k), ' ')
                              FROM generate_series(1, 8) k)) ORDER BY m)
         FROM generate_series(1, :msgs) m)),
       jsonb_build_object('sdk', 'bench-fallback', 'tags', jsonb_build_array('bench', 'synthetic'))
FROM generate_series(1, :ntraces) i;
ANALYZE traces;
