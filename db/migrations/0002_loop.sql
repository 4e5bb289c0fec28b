-- 0002_loop.sql: the improvement loop's records - what the executor did
-- with each plan (exec.result) and what every validator said
-- (validate.result) - and the indexes the loop's queries use.
--
-- The router (orchestrator/router.c) republishes every exec.result and
-- validate.result reply it receives as an event; the recorder stores
-- them in events and derives one row here per message, in the same
-- transaction, so a replayed message adds nothing.

-- one row per exec.result: the executor's answer to an exec.request
CREATE TABLE executions (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id  text NOT NULL,
    event_id text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    src      text NOT NULL,                -- the executor, name@host#pid
    status   text NOT NULL,                -- changed nothing failed
    commit   text,                         -- the plan branch's commit (changed)
    files    jsonb,                        -- the files changed
    diffstat text,                         -- git diff --shortstat
    error    text,
    at       timestamptz NOT NULL
);
CREATE INDEX executions_plan ON executions (plan_id, at);

-- one row per validate.result: one validator's verdict on a plan's commit
CREATE TABLE validations (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id   text NOT NULL,
    event_id  text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    src       text NOT NULL,               -- the validator, name@host#pid
    validator text NOT NULL,               -- test-runner, code-reviewer
    verdict   text NOT NULL,               -- pass reject error
    reasons   jsonb,
    details   jsonb,
    at        timestamptz NOT NULL
);
CREATE INDEX validations_plan ON validations (plan_id, at);

-- the prioritizer's open plans per target and the router's recovery
-- at start (plans by status)
CREATE INDEX improvement_suggestions_target_status ON improvement_suggestions (target, status);
-- duplicates by finding fingerprint: implementation_plan->'findings' ?| $1
CREATE INDEX improvement_suggestions_findings ON improvement_suggestions
    USING gin ((implementation_plan -> 'findings'));
-- the plans of one scan
CREATE INDEX improvement_suggestions_scan ON improvement_suggestions
    ((implementation_plan ->> 'scan_id'));
