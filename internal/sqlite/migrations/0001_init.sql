-- Seats per ticket: taken counts paid registrations and seats held while a
-- card is being charged. capacity follows the event file.
CREATE TABLE ticket_stock (
    event_id  TEXT    NOT NULL,
    ticket_id TEXT    NOT NULL,
    capacity  INTEGER NOT NULL CHECK (capacity >= 0),
    taken     INTEGER NOT NULL DEFAULT 0 CHECK (taken >= 0),
    PRIMARY KEY (event_id, ticket_id)
) STRICT;

-- A seat held for one attempt while its card is charged.
CREATE TABLE seat_holds (
    id              TEXT NOT NULL PRIMARY KEY,
    event_id        TEXT NOT NULL,
    ticket_id       TEXT NOT NULL,
    idempotency_key TEXT,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
) STRICT;
CREATE INDEX seat_holds_expires_at ON seat_holds (expires_at);

-- Client idempotency keys and the outcome to replay for them.
CREATE TABLE idempotency_keys (
    key             TEXT NOT NULL PRIMARY KEY,
    request_hash    TEXT NOT NULL,
    attempt_id      TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('in_progress', 'done')),
    registration_id TEXT,
    error_code      TEXT,
    error_message   TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE TABLE registrations (
    id                TEXT    NOT NULL PRIMARY KEY,
    event_id          TEXT    NOT NULL,
    ticket_id         TEXT    NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ('paid', 'processing', 'completed', 'needs_attention')),
    amount            INTEGER NOT NULL CHECK (amount >= 0),
    currency          TEXT    NOT NULL,
    first_name        TEXT    NOT NULL,
    last_name         TEXT    NOT NULL,
    email             TEXT    NOT NULL,
    company           TEXT    NOT NULL DEFAULT '',
    newsletter        INTEGER NOT NULL CHECK (newsletter IN (0, 1)),
    payment_provider  TEXT    NOT NULL DEFAULT '',
    payment_reference TEXT    NOT NULL DEFAULT '',
    card_brand        TEXT    NOT NULL DEFAULT '',
    card_last4        TEXT    NOT NULL DEFAULT '' CHECK (length(card_last4) IN (0, 4)),
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL
) STRICT;
CREATE INDEX registrations_ticket ON registrations (event_id, ticket_id);
CREATE INDEX registrations_status ON registrations (status);

CREATE TABLE registration_steps (
    registration_id TEXT    NOT NULL REFERENCES registrations (id),
    step            TEXT    NOT NULL CHECK (step IN ('save_order', 'send_confirmation', 'add_to_mailing_list')),
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'retrying', 'succeeded', 'failed', 'skipped')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    updated_at      TEXT    NOT NULL,
    PRIMARY KEY (registration_id, step)
) STRICT;

-- SaveOrder's table: one row per registration, upserted.
CREATE TABLE orders (
    registration_id   TEXT    NOT NULL PRIMARY KEY REFERENCES registrations (id),
    event_id          TEXT    NOT NULL,
    ticket_id         TEXT    NOT NULL,
    amount            INTEGER NOT NULL,
    currency          TEXT    NOT NULL,
    first_name        TEXT    NOT NULL,
    last_name         TEXT    NOT NULL,
    email             TEXT    NOT NULL,
    company           TEXT    NOT NULL,
    payment_provider  TEXT    NOT NULL,
    payment_reference TEXT    NOT NULL,
    saved_at          TEXT    NOT NULL
) STRICT;

-- SendEmailConfirmation's record: sent at most once per registration.
CREATE TABLE email_deliveries (
    registration_id TEXT NOT NULL PRIMARY KEY REFERENCES registrations (id),
    state           TEXT NOT NULL CHECK (state IN ('sending', 'sent')),
    reference       TEXT NOT NULL DEFAULT '',
    updated_at      TEXT NOT NULL
) STRICT;

-- The local mailing list, one row per lower-cased address.
CREATE TABLE mailing_list (
    email           TEXT NOT NULL PRIMARY KEY,
    first_name      TEXT NOT NULL,
    last_name       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    registration_id TEXT NOT NULL,
    consented_at    TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
