-- A step's name is one of the pipeline's activities; the pipeline keeps
-- their table, so a new activity needs no migration here. SQLite cannot
-- drop a CHECK constraint: the table is rebuilt without it.
CREATE TABLE registration_steps_new (
    registration_id TEXT    NOT NULL REFERENCES registrations (id),
    step            TEXT    NOT NULL CHECK (step <> ''),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'retrying', 'succeeded', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (registration_id, step)
) STRICT;
INSERT INTO registration_steps_new (registration_id, step, status, attempts, last_error, updated_at)
    SELECT registration_id, step, status, attempts, last_error, updated_at FROM registration_steps;
DROP TABLE registration_steps;
ALTER TABLE registration_steps_new RENAME TO registration_steps;
