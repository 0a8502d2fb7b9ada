-- A step's name is one of the pipeline's activities; the pipeline keeps
-- their table, so a new activity needs no migration here.
ALTER TABLE registration_steps DROP CONSTRAINT registration_steps_step_check;
ALTER TABLE registration_steps ADD CONSTRAINT registration_steps_step_check CHECK (step <> '');
