-- Per-email limits compare the address as the program folds it (trimmed,
-- lower-cased in every script, not only ASCII): each registration keeps that
-- folded address as email_key, indexed per ticket, in place of an index on
-- lower(email). Registrations from before are folded here by the database.
DROP INDEX registrations_ticket_email;
ALTER TABLE registrations ADD COLUMN email_key text NOT NULL DEFAULT '';
UPDATE registrations SET email_key = lower(trim(email));
CREATE INDEX registrations_ticket_email ON registrations (event_id, ticket_id, email_key);
