-- Kept in step with internal/sqlite/migrations/0008_data_protection.sql.
--
-- Data protection: the exact text a newsletter consent was given under, and
-- when a registration's personal data was erased (names, email, address
-- and company replaced; amount, payment reference, ticket and dates kept
-- for the accounts).
ALTER TABLE registrations
    ADD COLUMN newsletter_consent_text text NOT NULL DEFAULT '',
    ADD COLUMN anonymised_at timestamptz;
-- Retention looks for the registrations of an event not yet erased.
CREATE INDEX registrations_not_anonymised ON registrations (event_id, id) WHERE anonymised_at IS NULL;
