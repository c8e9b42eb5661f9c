-- The runtime manager's records, as `healthprobe run --records postgres://…` reads them.
--
-- healthprobe only reads this table: every tick it lists the rows whose
-- status is 'running', ordered by game_id. The runtime manager writes it.
-- Safe to run again (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS runtime_records (
    game_id              text PRIMARY KEY,
    current_container_id text,
    engine_endpoint      text,
    status               text,
    updated_at           timestamptz DEFAULT now()
);

-- Every tick filters on status = 'running'.
CREATE INDEX IF NOT EXISTS runtime_records_status_idx ON runtime_records (status);
