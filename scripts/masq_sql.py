"""SQL the benchmark scripts share about masq's own tables (the ledger is partitioned per
table and day: reading or removing one table's entries goes through its partitions)."""


def ledger_count(table):
    """Entries of one table's ledger."""
    return f"SELECT count(*) FROM masq.ledger_entries('{table}')"


def ledger_size(table):
    """(bytes on disk: heap + indexes + free-space and visibility maps; heap; indexes;
    partitions) of one table's ledger."""
    return f"""
        SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), coalesce(sum(pg_relation_size(c.oid)), 0),
               coalesce(sum(pg_indexes_size(c.oid)), 0), count(c.oid)
        FROM masq.ledger_partitions p
        JOIN pg_class c ON c.oid = to_regclass(format('masq.%I', format('ledger_%s_%s', p.target, to_char(p.day, 'YYYYMMDD'))))
        WHERE p.target = (SELECT id FROM masq.targets WHERE name = '{table}')"""


def forget(table):
    """Drops a table and everything masq keeps about it: ledger partitions, dead letters,
    policy events, its registration."""
    return f"""
        DROP TABLE IF EXISTS {table};
        DO $$
        DECLARE t integer := (SELECT id FROM masq.targets WHERE name = '{table}'); d date;
        BEGIN
            FOR d IN SELECT day FROM masq.ledger_partitions WHERE target = t LOOP
                EXECUTE format('DROP TABLE IF EXISTS masq.%I', format('ledger_%s_%s', t, to_char(d, 'YYYYMMDD')));
            END LOOP;
            DELETE FROM masq.ledger_partitions WHERE target = t;
            DELETE FROM masq.ledger_packed WHERE target = t;
            DELETE FROM masq.loads WHERE target = t;
            DELETE FROM masq.targets WHERE id = t;
        END $$;
        DELETE FROM masq.dead_letters WHERE target_table = '{table}';
        DELETE FROM masq.policy_events WHERE target_table = '{table}';"""
