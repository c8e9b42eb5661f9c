-- Failover across instances (`healthprobe --ha postgres://…`): the lease
-- table, in the same database as runtime_records. Safe to run again.
-- `:shards` is the fixed number of shards S (`healthprobe ha init --shards S`).
--
-- One row per shard, owned by one live instance under a lease whose epoch
-- goes up on every acquire (the fencing token). Lease expiry is judged by
-- this database's clock only: hp_now(), which is now() unless a test pins
-- the setting `hp.now` (production never sets it).

CREATE OR REPLACE FUNCTION hp_now() RETURNS timestamptz LANGUAGE sql STABLE AS
$$ SELECT coalesce(nullif(current_setting('hp.now', true), '')::timestamptz, now()) $$;

CREATE TABLE IF NOT EXISTS hp_ha (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    shard_count integer NOT NULL CHECK (shard_count BETWEEN 1 AND 1024),
    protocol    integer NOT NULL
);

CREATE TABLE IF NOT EXISTS hp_member (
    instance_id text PRIMARY KEY CHECK (length(instance_id) BETWEEN 1 AND 128),
    protocol    integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT hp_now(),
    expires_at  timestamptz NOT NULL
);

-- Not UNLOGGED: emptied after a crash, its epochs would start again at 0.
CREATE TABLE IF NOT EXISTS hp_shard (
    shard_id      integer PRIMARY KEY,
    owner         text,
    epoch         bigint NOT NULL DEFAULT 0,
    expires_at    timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at   timestamptz,
    snapshot      text NOT NULL DEFAULT '',
    written_epoch bigint NOT NULL DEFAULT 0,
    written_at    timestamptz
) WITH (fillfactor = 50);

-- Belt and braces: an epoch never goes back, and a snapshot is written only
-- by the current, unexpired owner under its epoch.
CREATE OR REPLACE FUNCTION hp_shard_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.epoch < OLD.epoch THEN
    RAISE EXCEPTION 'hp_shard %: epoch goes back', OLD.shard_id;
  END IF;
  IF NEW.snapshot IS DISTINCT FROM OLD.snapshot OR NEW.written_epoch <> OLD.written_epoch THEN
    IF NEW.written_epoch <> OLD.epoch OR NEW.epoch <> OLD.epoch
       OR NEW.owner IS DISTINCT FROM OLD.owner OR OLD.expires_at <= hp_now() THEN
      RAISE EXCEPTION USING ERRCODE = 'HP001', MESSAGE = format(
        'stale write to shard %s: epoch %s, current %s', OLD.shard_id, NEW.written_epoch, OLD.epoch);
    END IF;
  END IF;
  RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS hp_shard_guard ON hp_shard;
CREATE TRIGGER hp_shard_guard BEFORE UPDATE ON hp_shard
    FOR EACH ROW EXECUTE FUNCTION hp_shard_guard();
