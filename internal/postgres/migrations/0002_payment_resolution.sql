-- Kept in step with internal/sqlite/migrations/0002_payment_resolution.sql.

-- What an attempt would become, without card data, so that a charge whose
-- outcome was unknown (a timeout, a crash) can still become a registration.
ALTER TABLE seat_holds ADD COLUMN draft jsonb NOT NULL DEFAULT '{}';

-- Payment events an operator must be able to see: refunds of charges that
-- could not become registrations, failed refunds, and in-doubt payments
-- resolved after the fact.
CREATE TABLE payment_incidents (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    attempt_id   text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('refunded', 'refund_failed', 'resolved_charged', 'resolved_not_charged', 'unresolved')),
    provider     text        NOT NULL DEFAULT '',
    reference    text        NOT NULL DEFAULT '',
    amount       bigint      NOT NULL DEFAULT 0,
    currency     text        NOT NULL DEFAULT '',
    detail       text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL
);
CREATE INDEX payment_incidents_attempt ON payment_incidents (attempt_id);
