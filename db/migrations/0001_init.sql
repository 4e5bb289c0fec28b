-- 0001_init.sql: the raw bus log, the agents, scans, findings and metrics,
-- and the seed's four tables (autonomous_agent_logs,
-- improvement_suggestions, code_quality_snapshots, learned_patterns) with
-- every column the seed gives them.
--
-- The recorder (orchestrator/recorder.c) inserts every bus message into
-- events, keyed by the envelope id, and derives the typed rows from the
-- messages that were new in the same transaction, so a replayed message
-- adds nothing anywhere. Timestamps without a time zone (the seed's
-- columns) hold UTC: every kaizen connection sets TimeZone=UTC.

-- every message seen on the bus, in the order the recorder stored it
CREATE TABLE events (
    id          text PRIMARY KEY,             -- envelope id (a ULID)
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE, -- arrival order
    type        text NOT NULL,
    src         text NOT NULL,                -- name@host#pid
    ts          timestamptz NOT NULL,         -- when the sender made it
    corr        text,
    target      text,
    body        jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_type_ts ON events (type, ts DESC);
CREATE INDEX events_ts ON events (ts DESC);
CREATE INDEX events_corr ON events (corr) WHERE corr IS NOT NULL;

-- every agent instance ever heard from (one row per name@host#pid)
CREATE TABLE agents (
    agent_id      text PRIMARY KEY,           -- name@host#pid
    name          text NOT NULL,
    layer         text,
    host          text,
    pid           integer,
    version       text,
    state         text NOT NULL,              -- starting idle busy stopping stopped
    started_at    timestamptz,
    last_seen     timestamptz NOT NULL,
    stopped_at    timestamptz,
    cycles        bigint NOT NULL DEFAULT 0,
    last_cycle_ms bigint,
    last_result   text,
    stop_reason   text
);
CREATE INDEX agents_name ON agents (name, last_seen DESC);
CREATE INDEX agents_last_seen ON agents (last_seen DESC);

-- the seed's agent activity log: hello, bye, log lines, scans, plans,
-- supervisor events
CREATE TABLE autonomous_agent_logs (
    id SERIAL PRIMARY KEY,
    agent_name VARCHAR(100) NOT NULL,
    layer VARCHAR(50) NOT NULL,
    action VARCHAR(200) NOT NULL,
    status VARCHAR(50) NOT NULL,
    details JSONB,
    metrics JSONB,
    created_at TIMESTAMP DEFAULT NOW(),
    -- beyond the seed
    agent_id text,
    event_id text REFERENCES events (id) ON DELETE SET NULL,
    target text,
    corr text
);
CREATE INDEX autonomous_agent_logs_created ON autonomous_agent_logs (created_at DESC);
CREATE INDEX autonomous_agent_logs_agent ON autonomous_agent_logs (agent_name, created_at DESC);
CREATE INDEX autonomous_agent_logs_layer ON autonomous_agent_logs (layer, created_at DESC);
CREATE INDEX autonomous_agent_logs_status ON autonomous_agent_logs (status, created_at DESC);

-- one row per scan (scan.started, completed by scan.completed)
CREATE TABLE scans (
    scan_id      text PRIMARY KEY,
    target       text,
    agent_id     text,
    commit       text,
    status       text NOT NULL DEFAULT 'running', -- running ok partial failed
    files        integer,
    findings     integer,
    duration_ms  bigint,
    tools        jsonb,
    started_at   timestamptz,
    completed_at timestamptz
);
CREATE INDEX scans_target ON scans (target, started_at DESC);

-- normalised findings (finding.batch)
CREATE TABLE findings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scan_id     text NOT NULL,
    event_id    text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    target      text,
    tool        text NOT NULL,
    rule        text NOT NULL,
    severity    text NOT NULL,
    category    text NOT NULL,
    file        text NOT NULL,
    line        integer NOT NULL,
    col         integer,
    message     text NOT NULL,
    fingerprint text NOT NULL,
    fix         text,
    created_at  timestamptz NOT NULL
);
CREATE INDEX findings_scan ON findings (scan_id);
CREATE INDEX findings_fingerprint ON findings (fingerprint);
CREATE INDEX findings_target ON findings (target, severity, created_at DESC);

-- metric samples (metric.batch)
CREATE TABLE metrics (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    scan_id  text,
    target   text,
    src      text NOT NULL,
    name     text NOT NULL,
    value    double precision NOT NULL,
    unit     text,
    labels   jsonb,
    ts       timestamptz NOT NULL
);
CREATE INDEX metrics_name_ts ON metrics (name, ts DESC);
CREATE INDEX metrics_target ON metrics (target, name, ts DESC);

-- the seed's plans (plan.proposed, then their state changes)
CREATE TABLE improvement_suggestions (
    id SERIAL PRIMARY KEY,
    agent_name VARCHAR(100) NOT NULL,
    category VARCHAR(50) NOT NULL,
    priority INTEGER NOT NULL,
    title VARCHAR(200) NOT NULL,
    description TEXT,
    implementation_plan JSONB,
    estimated_impact FLOAT,
    status VARCHAR(50) DEFAULT 'pending',
    created_at TIMESTAMP DEFAULT NOW(),
    implemented_at TIMESTAMP,
    -- beyond the seed
    plan_id text UNIQUE,
    target text,
    fixer text,
    effort double precision,
    risk double precision,
    updated_at TIMESTAMP
);
CREATE INDEX improvement_suggestions_status ON improvement_suggestions (status, priority);

-- every state change of a plan, in order
CREATE TABLE plan_transitions (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan_id  text NOT NULL,
    state    text NOT NULL,
    event_id text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    src      text NOT NULL,
    details  jsonb,
    at       timestamptz NOT NULL
);
CREATE INDEX plan_transitions_plan ON plan_transitions (plan_id, at);

-- the seed's quality over time (analysis.result of kind quality)
CREATE TABLE code_quality_snapshots (
    id SERIAL PRIMARY KEY,
    overall_score FLOAT,
    test_coverage FLOAT,
    complexity_score FLOAT,
    documentation_score FLOAT,
    security_score FLOAT,
    performance_score FLOAT,
    metrics JSONB,
    created_at TIMESTAMP DEFAULT NOW(),
    -- beyond the seed
    scan_id text,
    target text,
    event_id text REFERENCES events (id) ON DELETE SET NULL
);
CREATE INDEX code_quality_snapshots_target ON code_quality_snapshots (target, created_at DESC);

-- the seed's learning patterns (learn.update: one row per pattern)
CREATE TABLE learned_patterns (
    id SERIAL PRIMARY KEY,
    pattern_type VARCHAR(100) NOT NULL,
    pattern_data JSONB,
    success_rate FLOAT,
    usage_count INTEGER DEFAULT 0,
    last_used_at TIMESTAMP,
    created_at TIMESTAMP DEFAULT NOW(),
    -- beyond the seed
    pattern text UNIQUE,
    successes integer NOT NULL DEFAULT 0,
    failures integer NOT NULL DEFAULT 0
);
