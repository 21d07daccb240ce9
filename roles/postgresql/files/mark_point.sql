
-- Marks a point in the primary's history that a restore can reach exactly, with a snapshot
-- that sees the application's tables as they are at that point. Call it in a READ COMMITTED
-- transaction, import the snapshot from a second session (SET TRANSACTION SNAPSHOT), then
-- end the first transaction: its SHARE locks held new writes back until then.
-- Managed by Ansible (roles/postgresql/files/mark_point.sql).
DECLARE
  application_table regclass;
BEGIN
  FOR application_table IN
    SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.oid
  LOOP
    -- Waits for every transaction that wrote to the table to end, and blocks new writers.
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', application_table);
  END LOOP;
  -- Each statement takes a new snapshot in READ COMMITTED: this one follows the locks, so it
  -- sees every write that committed before the position read next, and nothing after it.
  snapshot := pg_export_snapshot();
  -- A record at the point even on an idle server, so that replay has one to stop at.
  PERFORM pg_create_restore_point('stet_test_restore');
  lsn := pg_current_wal_insert_lsn();
  -- Closes the segment so that archiving sends the point to the repository now; the
  -- segment to wait for is the one this position ends.
  wal_end := pg_switch_wal();
END
