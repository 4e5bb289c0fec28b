-- 0005_attempts.sql: every attempt of a call, after a broker restart.
--
-- A call whose broker connection drops while it is outstanding is asked
-- again (PROTOCOL.md 1.3 "Re-asking"). The router then republishes one
-- exec.result {status "lost", attempt K} per ask whose reply was lost,
-- and the reply itself with attempt = the ask it came on and replayed =
-- true when it is the executor's kept answer to an earlier ask (one run)
-- rather than a second run. A call asked once has attempt 1, replayed
-- false. executions.status gains 'lost'.
ALTER TABLE executions ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE executions ADD COLUMN replayed boolean NOT NULL DEFAULT false;
ALTER TABLE validations ADD COLUMN attempt integer NOT NULL DEFAULT 1;
ALTER TABLE validations ADD COLUMN replayed boolean NOT NULL DEFAULT false;
