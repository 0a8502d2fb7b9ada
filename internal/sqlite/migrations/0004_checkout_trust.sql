-- A checkout people trust: per-email limits and newsletter double opt-in.

-- Limits per email address compare the normalised, lower-cased address: a
-- held seat records it, and registrations are found by it per ticket. The
-- index also counts a ticket's held seats.
ALTER TABLE seat_holds ADD COLUMN email TEXT NOT NULL DEFAULT '';
CREATE INDEX seat_holds_ticket_email ON seat_holds (event_id, ticket_id, email);
CREATE INDEX registrations_ticket_email ON registrations (event_id, ticket_id, lower(email));

-- Double opt-in on the local mailing list: an address is 'pending' until its
-- owner follows the confirmation link (only the SHA-256 of its token is kept).
-- Rows from before were subscribed at once and stay so.
ALTER TABLE mailing_list ADD COLUMN status TEXT NOT NULL DEFAULT 'subscribed' CHECK (status IN ('pending', 'subscribed'));
ALTER TABLE mailing_list ADD COLUMN confirm_token_hash TEXT;
ALTER TABLE mailing_list ADD COLUMN confirmed_at TEXT;
CREATE UNIQUE INDEX mailing_list_confirm_token ON mailing_list (confirm_token_hash) WHERE confirm_token_hash IS NOT NULL;
ALTER TABLE registrations ADD COLUMN newsletter_confirmed_at TEXT;
