-- What an attempt would become, without card data, so that a charge whose
-- outcome was unknown (a timeout, a crash) can still become a registration.
ALTER TABLE seat_holds ADD COLUMN draft TEXT NOT NULL DEFAULT '{}';

-- Payment events an operator must be able to see: refunds of charges that
-- could not become registrations, failed refunds, and in-doubt payments
-- resolved after the fact.
CREATE TABLE payment_incidents (
    id           INTEGER PRIMARY KEY,
    attempt_id   TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('refunded', 'refund_failed', 'resolved_charged', 'resolved_not_charged', 'unresolved')),
    provider     TEXT    NOT NULL DEFAULT '',
    reference    TEXT    NOT NULL DEFAULT '',
    amount       INTEGER NOT NULL DEFAULT 0,
    currency     TEXT    NOT NULL DEFAULT '',
    detail       TEXT    NOT NULL DEFAULT '',
    created_at   TEXT    NOT NULL
) STRICT;
CREATE INDEX payment_incidents_attempt ON payment_incidents (attempt_id);
