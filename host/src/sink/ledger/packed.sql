-- The packed ledger, created by `masq db init` after ledger.sql (sink/ledger/schema.rs). Safe
-- to run again. See docs/ledger.md, "Packing past days".
--
-- A day's partition holds one 56-byte row and one unique-index entry per message: about 105
-- bytes. Once the day is over, few new claims land in it (late and redelivered messages), so
-- masq moves its entries into sorted arrays, about a thousand ids per row, and empties the
-- partition: about 24 bytes per message. Claims keep going to the partition and its unique
-- index, which is what makes two consumers of one message agree; a claim then looks for its
-- ids among the packed ones (masq.ledger_packed_ids), in a statement after its insert, so a
-- pack that moved an id in between is always seen: the insert of an id a pack is deleting
-- waits for the pack's commit, and the next statement's snapshot has it packed.

-- How a day's packed ids are split into buckets: the first `packed_bits` bits of the id (set
-- by the first pack, raised when the day outgrows them). NULL: never packed.
ALTER TABLE masq.ledger_partitions ADD COLUMN IF NOT EXISTS packed_bits smallint;
ALTER TABLE masq.ledger_partitions ADD COLUMN IF NOT EXISTS packed_at timestamptz;

-- One row per bucket of one table's day: the entries whose id starts with the bucket's bits,
-- sorted by id, each column an array in the same order. `low` is the bucket's first possible
-- id, so a lookup takes the row with the greatest `low` not above the id (no need to know the
-- bits). sent_ms: milliseconds since the day began (SQS send times are whole milliseconds;
-- others stay in the partition).
CREATE TABLE IF NOT EXISTS masq.ledger_packed (
    target    integer    NOT NULL,
    day       date       NOT NULL,
    low       uuid       NOT NULL,
    ids       uuid[]     NOT NULL,
    sent_ms   integer[]  NOT NULL,
    policies  smallint[] NOT NULL,
    outcomes  "char"[]   NOT NULL,
    PRIMARY KEY (target, day, low)
);

-- Whoever may claim messages may look among the packed ones: claims read this table.
DO $$
DECLARE
    grantee oid;
BEGIN
    FOR grantee IN
        SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'masq.ledger'::regclass AND a.privilege_type = 'INSERT'
    LOOP
        IF grantee = 0 THEN
            GRANT SELECT ON masq.ledger_packed TO PUBLIC;
        ELSE
            EXECUTE format('GRANT SELECT ON masq.ledger_packed TO %I', grantee::regrole);
        END IF;
    END LOOP;
END
$$;

-- The bucket of an id under `bits` (0 to 24): its first `bits` bits.
CREATE OR REPLACE FUNCTION masq.ledger_bucket(p_id uuid, p_bits integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ((get_byte(b, 0) << 16) | (get_byte(b, 1) << 8) | get_byte(b, 2)) >> (24 - p_bits)
    FROM (SELECT uuid_send(p_id) AS b) AS s
$$;

-- The first id of a bucket.
CREATE OR REPLACE FUNCTION masq.ledger_bucket_low(p_bucket integer, p_bits integer) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (lpad(to_hex(p_bucket << (24 - p_bits)), 6, '0') || repeat('0', 26))::uuid
$$;

-- The ids among p_ids (sent at p_sent, on the days p_days) that are packed: claimed before, on
-- a day since packed. A claim runs it after its insert, never before (see the top of this
-- file). A batch of days never packed (nearly every batch) costs one index probe; otherwise
-- one probe per id, for the bucket with the greatest `low` not above it. PL/pgSQL so that each
-- connection plans these queries once (an inlined SQL function was planned on every call:
-- 0.5 ms, ten times what it runs for).
CREATE OR REPLACE FUNCTION masq.ledger_packed_ids(p_target integer, p_sent timestamptz[],
                                                  p_ids uuid[], p_days date[])
RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM masq.ledger_packed p WHERE p.target = p_target AND p.day = ANY (p_days)) THEN
        RETURN;
    END IF;
    RETURN QUERY
        SELECT t.id FROM unnest(p_sent, p_ids) AS t(sent_at, id)
        CROSS JOIN LATERAL (
            SELECT k.ids FROM masq.ledger_packed k
            WHERE k.target = p_target AND k.day = (t.sent_at AT TIME ZONE 'UTC')::date AND k.low <= t.id
            ORDER BY k.low DESC LIMIT 1
        ) AS k
        WHERE t.id = ANY (k.ids);
END
$$;

-- Starts packing a table's day: returns the bucket bits to pack with, or NULL when another
-- packer holds the day (or it has no partition). Sizes buckets at about 1,024 entries; a day
-- that outgrew its buckets fourfold (late messages) has its packed rows split again first.
CREATE OR REPLACE FUNCTION masq.ledger_pack_begin(p_target integer, p_day date)
RETURNS smallint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    part     text := format('ledger_%s_%s', p_target, to_char(p_day, 'YYYYMMDD'));
    bits     smallint;
    live     bigint;
    packed   bigint;
    wanted   smallint;
BEGIN
    IF to_regclass(format('masq.%I', part)) IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT p.packed_bits INTO bits FROM masq.ledger_partitions p
    WHERE p.target = p_target AND p.day = p_day FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    EXECUTE format('SELECT count(*) FROM masq.%I', part) INTO live;
    SELECT coalesce(sum(cardinality(k.ids)), 0) INTO packed FROM masq.ledger_packed k
    WHERE k.target = p_target AND k.day = p_day;
    wanted := CASE WHEN live + packed <= 1024 THEN 0
                   ELSE least(24, ceil(log(2, (live + packed) / 1024.0)))::smallint END;
    IF bits IS NULL THEN
        bits := wanted;
    ELSIF wanted >= bits + 2 THEN
        -- Split every bucket of the day again. Lookups see the old rows or the new ones, never
        -- neither: one statement, one commit.
        WITH earlier AS (
            DELETE FROM masq.ledger_packed k WHERE k.target = p_target AND k.day = p_day
            RETURNING k.*
        ), members AS (
            SELECT m.* FROM earlier e
            CROSS JOIN LATERAL unnest(e.ids, e.sent_ms, e.policies, e.outcomes) AS m(id, ms, policy, outcome)
        )
        INSERT INTO masq.ledger_packed (target, day, low, ids, sent_ms, policies, outcomes)
        SELECT p_target, p_day, masq.ledger_bucket_low(masq.ledger_bucket(id, wanted), wanted),
               array_agg(id ORDER BY id), array_agg(ms ORDER BY id),
               array_agg(policy ORDER BY id), array_agg(outcome ORDER BY id)
        FROM members GROUP BY 3;
        bits := wanted;
    END IF;
    UPDATE masq.ledger_partitions p SET packed_bits = bits
    WHERE p.target = p_target AND p.day = p_day;
    RETURN bits;
END
$$;

-- Moves the entries of buckets [p_from, p_to) of a table's day from its partition into
-- masq.ledger_packed, merged with what those buckets held; returns how many it moved. Only
-- entries that are settled for good move: written or dropped, with an SQS-style id (no
-- text_id) and a send time in whole milliseconds. Dead letters stay (replay moves them).
-- Deletes rows, so a claim of one of these ids waits for this transaction, then finds it
-- packed; it holds the day's row in masq.ledger_partitions, so packers of a day take turns.
CREATE OR REPLACE FUNCTION masq.ledger_pack(p_target integer, p_day date, p_from integer, p_to integer)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    part   text := format('ledger_%s_%s', p_target, to_char(p_day, 'YYYYMMDD'));
    bits   smallint;
    moved  bigint;
BEGIN
    SELECT p.packed_bits INTO bits FROM masq.ledger_partitions p
    WHERE p.target = p_target AND p.day = p_day FOR UPDATE;
    IF bits IS NULL OR to_regclass(format('masq.%I', part)) IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE format($q$
        WITH moved AS (
            DELETE FROM masq.%I l
            WHERE l.id >= $1 AND ($2::uuid IS NULL OR l.id < $2)
              AND l.text_id IS NULL AND l.outcome IN ('w', 'd')
              AND date_trunc('milliseconds', l.sent_at) = l.sent_at
            RETURNING l.id, l.sent_at, l.policy, l.outcome
        ), earlier AS (
            SELECT m.id, m.ms, m.policy, m.outcome, false AS fresh
            FROM masq.ledger_packed k
            CROSS JOIN LATERAL unnest(k.ids, k.sent_ms, k.policies, k.outcomes) AS m(id, ms, policy, outcome)
            WHERE k.target = $3 AND k.day = $4 AND k.low >= $1 AND ($2::uuid IS NULL OR k.low < $2)
        ), members AS (
            SELECT id, (extract(epoch FROM sent_at - ($4::timestamp AT TIME ZONE 'UTC')) * 1000)::integer AS ms,
                   policy, outcome, true AS fresh
            FROM moved
            UNION ALL
            SELECT * FROM earlier
        ), packed AS (
            INSERT INTO masq.ledger_packed AS k (target, day, low, ids, sent_ms, policies, outcomes)
            SELECT $3, $4, masq.ledger_bucket_low(masq.ledger_bucket(id, $5), $5),
                   array_agg(id ORDER BY id), array_agg(ms ORDER BY id),
                   array_agg(policy ORDER BY id), array_agg(outcome ORDER BY id)
            FROM members GROUP BY 3 HAVING bool_or(fresh)
            ON CONFLICT (target, day, low) DO UPDATE
            SET ids = EXCLUDED.ids, sent_ms = EXCLUDED.sent_ms,
                policies = EXCLUDED.policies, outcomes = EXCLUDED.outcomes
            RETURNING 1
        )
        SELECT count(*) FROM moved
    $q$, part)
    INTO moved
    USING masq.ledger_bucket_low(p_from, bits),
          CASE WHEN p_to < (1 << bits) THEN masq.ledger_bucket_low(p_to, bits) END,
          p_target, p_day, bits;
    RETURN moved;
END
$$;

-- Gives a packed day's partition its space back: the rows packing deleted still take their
-- pages and index entries until the table is rewritten. Under an ACCESS EXCLUSIVE lock on the
-- partition (given up after 2 s, like a prune: claims of that day wait meanwhile), packs what
-- came since, keeps the rows that stay (dead letters, text ids), truncates, puts them back.
-- Returns false when the partition was too busy to lock; the next upkeep tries again.
CREATE OR REPLACE FUNCTION masq.ledger_pack_finish(p_target integer, p_day date)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    part  text := format('ledger_%s_%s', p_target, to_char(p_day, 'YYYYMMDD'));
    bits  smallint;
    kept  masq.ledger[];
BEGIN
    SELECT p.packed_bits INTO bits FROM masq.ledger_partitions p
    WHERE p.target = p_target AND p.day = p_day FOR UPDATE;
    IF bits IS NULL OR to_regclass(format('masq.%I', part)) IS NULL THEN
        RETURN false;
    END IF;
    BEGIN
        PERFORM set_config('lock_timeout', '2s', true);
        EXECUTE format('LOCK TABLE masq.%I IN ACCESS EXCLUSIVE MODE', part);
    EXCEPTION WHEN lock_not_available THEN
        RETURN false;
    END;
    PERFORM set_config('lock_timeout', '0', true);
    PERFORM masq.ledger_pack(p_target, p_day, 0, 1 << bits);
    EXECUTE format('SELECT array_agg(ROW(l.*)::masq.ledger) FROM masq.%I l', part) INTO kept;
    EXECUTE format('TRUNCATE masq.%I', part);
    IF kept IS NOT NULL THEN
        EXECUTE format('INSERT INTO masq.%I SELECT (k).* FROM unnest($1) AS k', part) USING kept;
    END IF;
    UPDATE masq.ledger_partitions p SET packed_at = now()
    WHERE p.target = p_target AND p.day = p_day;
    RETURN true;
END
$$;

-- The days of a table that have entries to pack: their partition holds a settled entry with
-- an SQS-style id, and the day ended before p_before.
CREATE OR REPLACE FUNCTION masq.ledger_pack_due(p_target integer, p_before timestamptz)
RETURNS SETOF date
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    d    date;
    due  boolean;
BEGIN
    FOR d IN
        SELECT p.day FROM masq.ledger_partitions p
        WHERE p.target = p_target AND (p.day + 1)::timestamp AT TIME ZONE 'UTC' <= p_before
        ORDER BY p.day
    LOOP
        CONTINUE WHEN to_regclass(format('masq.%I', format('ledger_%s_%s', p_target, to_char(d, 'YYYYMMDD')))) IS NULL;
        EXECUTE format(
            'SELECT EXISTS (SELECT FROM masq.%I l WHERE l.text_id IS NULL AND l.outcome IN (''w'', ''d'') '
            'AND date_trunc(''milliseconds'', l.sent_at) = l.sent_at)',
            format('ledger_%s_%s', p_target, to_char(d, 'YYYYMMDD'))) INTO due;
        IF due THEN
            RETURN NEXT d;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION masq.ledger_pack_begin(integer, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION masq.ledger_pack(integer, date, integer, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION masq.ledger_pack_finish(integer, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION masq.ledger_pack_due(integer, timestamptz) FROM PUBLIC;
