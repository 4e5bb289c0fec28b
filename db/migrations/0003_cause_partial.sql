-- 0003_cause_partial.sql: why a plan failed or was rejected, in one word,
-- and whether a quality snapshot rates a partial scan.
--
-- improvement_suggestions.cause: the `cause` of the plan's plan.failed or
-- plan.rejected (PROTOCOL.md 4.12, 4.15): change, fixer, person (the
-- fixer's doing) or nothing_to_do, suite, timeout, no_reply, no_executor,
-- no_validator, conflict, interrupted, invalid, error (not). NULL while
-- the plan is not failed or rejected, and when the event named no cause.
-- The recorder sets it; the planner reads it (a plan that failed with
-- nothing_to_do or suite at a commit keeps its findings from being
-- proposed again at that commit).
ALTER TABLE improvement_suggestions ADD COLUMN cause text;

-- code_quality_snapshots.partial: the snapshot's scan was partial or
-- failed, or a tool of it did not run clean (error, timeout, missing):
-- findings may be missing, so its rating is not the whole truth
-- (code-quality's summary key "partial"). The snapshots made before this
-- migration know only their scan's status.
ALTER TABLE code_quality_snapshots ADD COLUMN partial boolean NOT NULL DEFAULT false;
UPDATE code_quality_snapshots SET partial = true
    WHERE metrics->>'status' IN ('partial', 'failed');
