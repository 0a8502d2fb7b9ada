-- Kept in step with internal/sqlite/migrations/0001_init.sql: the same
-- tables, columns and constraints in PostgreSQL's types.

-- Seats per ticket: taken counts paid registrations and seats held while a
-- card is being charged. capacity follows the event file.
CREATE TABLE ticket_stock (
    event_id  text   NOT NULL,
    ticket_id text   NOT NULL,
    capacity  bigint NOT NULL CHECK (capacity >= 0),
    taken     bigint NOT NULL DEFAULT 0 CHECK (taken >= 0),
    PRIMARY KEY (event_id, ticket_id)
);

-- A seat held for one attempt while its card is charged.
CREATE TABLE seat_holds (
    id              text        NOT NULL PRIMARY KEY,
    event_id        text        NOT NULL,
    ticket_id       text        NOT NULL,
    idempotency_key text,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL
);
CREATE INDEX seat_holds_expires_at ON seat_holds (expires_at);

-- Client idempotency keys and the outcome to replay for them.
CREATE TABLE idempotency_keys (
    key             text        NOT NULL PRIMARY KEY,
    request_hash    text        NOT NULL,
    attempt_id      text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('in_progress', 'done')),
    registration_id text,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

CREATE TABLE registrations (
    id                text        NOT NULL PRIMARY KEY,
    event_id          text        NOT NULL,
    ticket_id         text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('paid', 'processing', 'completed', 'needs_attention')),
    amount            bigint      NOT NULL CHECK (amount >= 0),
    currency          text        NOT NULL,
    first_name        text        NOT NULL,
    last_name         text        NOT NULL,
    email             text        NOT NULL,
    company           text        NOT NULL DEFAULT '',
    newsletter        boolean     NOT NULL,
    payment_provider  text        NOT NULL DEFAULT '',
    payment_reference text        NOT NULL DEFAULT '',
    card_brand        text        NOT NULL DEFAULT '',
    card_last4        text        NOT NULL DEFAULT '' CHECK (length(card_last4) IN (0, 4)),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX registrations_ticket ON registrations (event_id, ticket_id);
CREATE INDEX registrations_status ON registrations (status);

CREATE TABLE registration_steps (
    registration_id text        NOT NULL REFERENCES registrations (id),
    step            text        NOT NULL CHECK (step IN ('save_order', 'send_confirmation', 'add_to_mailing_list')),
    status          text        NOT NULL CHECK (status IN ('pending', 'running', 'retrying', 'succeeded', 'failed', 'skipped')),
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text        NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (registration_id, step)
);

-- SaveOrder's table: one row per registration, upserted.
CREATE TABLE orders (
    registration_id   text        NOT NULL PRIMARY KEY REFERENCES registrations (id),
    event_id          text        NOT NULL,
    ticket_id         text        NOT NULL,
    amount            bigint      NOT NULL,
    currency          text        NOT NULL,
    first_name        text        NOT NULL,
    last_name         text        NOT NULL,
    email             text        NOT NULL,
    company           text        NOT NULL,
    payment_provider  text        NOT NULL,
    payment_reference text        NOT NULL,
    saved_at          timestamptz NOT NULL
);

-- SendEmailConfirmation's record: sent at most once per registration.
CREATE TABLE email_deliveries (
    registration_id text        NOT NULL PRIMARY KEY REFERENCES registrations (id),
    state           text        NOT NULL CHECK (state IN ('sending', 'sent')),
    reference       text        NOT NULL DEFAULT '',
    updated_at      timestamptz NOT NULL
);

-- The local mailing list, one row per lower-cased address.
CREATE TABLE mailing_list (
    email           text        NOT NULL PRIMARY KEY,
    first_name      text        NOT NULL,
    last_name       text        NOT NULL,
    event_id        text        NOT NULL,
    registration_id text        NOT NULL,
    consented_at    timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
