-- pgbench custom script: fetch one trace (a row carrying ~8 KB of JSONB) by its text id,
-- the workload tracegate exists for. Run with  -f bench/trace_fetch.sql -D ntraces=<rows>.
--
-- Table layout is scripts/gen_traces.py's (traces.id text primary key; input, output and
-- metadata jsonb); bench/lib/traces_fallback.sql builds the same shape when the
-- generator is absent. bench_trace_ids (built by pg_overhead.sh) maps 1..ntraces onto
-- the trace ids, whatever their format, so the random pick stays one statement and one
-- round trip: a primary-key lookup of the id, then a primary-key lookup of the trace,
-- returning exactly one whole row.
\set r random(1, :ntraces)
SELECT t.* FROM traces t WHERE t.id = (SELECT b.id FROM bench_trace_ids b WHERE b.n = :r);
