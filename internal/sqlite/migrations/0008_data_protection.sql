-- Data protection: the exact text a newsletter consent was given under, and
-- when a registration's personal data was erased (names, email, address
-- and company replaced; amount, payment reference, ticket and dates kept
-- for the accounts).
ALTER TABLE registrations ADD COLUMN newsletter_consent_text TEXT NOT NULL DEFAULT '';
ALTER TABLE registrations ADD COLUMN anonymised_at TEXT;
-- Retention looks for the registrations of an event not yet erased.
CREATE INDEX registrations_not_anonymised ON registrations (event_id, id) WHERE anonymised_at IS NULL;
