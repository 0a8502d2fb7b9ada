-- The back office: a registration can be cancelled and refunded, keeps its
-- billing address and when newsletter consent was given; organiser accounts,
-- their sessions, login throttling, the audit log, refunds, emails sent
-- besides the confirmation, and notices waiting to be sent to organisers.
--
-- SQLite cannot change a CHECK constraint in place: registrations is rebuilt
-- (foreign keys are checked once the migration is done).
CREATE TABLE registrations_new (
    id                      TEXT    NOT NULL PRIMARY KEY,
    event_id                TEXT    NOT NULL,
    ticket_id               TEXT    NOT NULL,
    status                  TEXT    NOT NULL CHECK (status IN ('paid', 'processing', 'completed', 'needs_attention', 'cancelled')),
    amount                  INTEGER NOT NULL CHECK (amount >= 0),
    currency                TEXT    NOT NULL,
    first_name              TEXT    NOT NULL,
    last_name               TEXT    NOT NULL,
    email                   TEXT    NOT NULL,
    company                 TEXT    NOT NULL DEFAULT '',
    newsletter              INTEGER NOT NULL CHECK (newsletter IN (0, 1)),
    newsletter_consented_at TEXT,
    payment_provider        TEXT    NOT NULL DEFAULT '',
    payment_reference       TEXT    NOT NULL DEFAULT '',
    card_brand              TEXT    NOT NULL DEFAULT '',
    card_last4              TEXT    NOT NULL DEFAULT '' CHECK (length(card_last4) IN (0, 4)),
    billing_line1           TEXT    NOT NULL DEFAULT '',
    billing_line2           TEXT    NOT NULL DEFAULT '',
    billing_city            TEXT    NOT NULL DEFAULT '',
    billing_postal_code     TEXT    NOT NULL DEFAULT '',
    billing_region          TEXT    NOT NULL DEFAULT '',
    billing_country         TEXT    NOT NULL DEFAULT '',
    -- refunded is the sum of successful refunds; reserved adds the refunds
    -- requested and not yet failed, so that concurrent requests can never
    -- add up to more than the charge.
    refunded                INTEGER NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    refund_reserved         INTEGER NOT NULL DEFAULT 0 CHECK (refund_reserved >= refunded AND refund_reserved <= amount),
    cancelled_at            TEXT,
    -- search is what the back office's search matches a part of: first and
    -- last name, email and company, lower-cased, separated by U+001F so
    -- that no match spans two of them.
    search                  TEXT    NOT NULL DEFAULT '',
    created_at              TEXT    NOT NULL,
    updated_at              TEXT    NOT NULL
) STRICT;
INSERT INTO registrations_new (id, event_id, ticket_id, status, amount, currency, first_name, last_name, email,
    company, newsletter, newsletter_consented_at, payment_provider, payment_reference, card_brand, card_last4,
    search, created_at, updated_at)
SELECT id, event_id, ticket_id, status, amount, currency, first_name, last_name, email,
    company, newsletter, CASE WHEN newsletter = 1 THEN created_at END, payment_provider, payment_reference,
    card_brand, card_last4, lower(first_name || ' ' || last_name || char(31) || email || char(31) || company),
    created_at, updated_at
FROM registrations;
DROP TABLE registrations;
ALTER TABLE registrations_new RENAME TO registrations;
CREATE INDEX registrations_ticket ON registrations (event_id, ticket_id);
CREATE INDEX registrations_status ON registrations (status, created_at DESC, id DESC);
-- The back office lists newest first, by keyset; a search walks this index
-- alone (it holds what the search matches) and reads only the rows found.
CREATE INDEX registrations_created ON registrations (created_at DESC, id DESC, search);
CREATE INDEX registrations_email ON registrations (email COLLATE NOCASE);
CREATE INDEX registrations_reference ON registrations (payment_reference) WHERE payment_reference <> '';

CREATE TABLE admin_accounts (
    id            INTEGER PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('owner', 'finance', 'staff')),
    created_at    TEXT    NOT NULL,
    last_login_at TEXT
) STRICT;

-- Sessions keep a hash of the token only: the cookie is the only copy.
CREATE TABLE admin_sessions (
    token_hash   TEXT    NOT NULL PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    created_at   TEXT    NOT NULL,
    last_seen_at TEXT    NOT NULL,
    expires_at   TEXT    NOT NULL,
    address      TEXT    NOT NULL DEFAULT '',
    user_agent   TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX admin_sessions_account ON admin_sessions (account_id);

-- Failed logins per client address ("addr:...") and per account
-- ("account:..."), with when the next attempt is allowed.
CREATE TABLE login_throttle (
    key             TEXT    NOT NULL PRIMARY KEY,
    failures        INTEGER NOT NULL,
    last_failure_at TEXT    NOT NULL,
    blocked_until   TEXT    NOT NULL
) STRICT;

-- Every back-office action and login: who, when, what, from where.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at              TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    action          TEXT    NOT NULL,
    registration_id TEXT,
    detail          TEXT    NOT NULL DEFAULT '',
    address         TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX audit_log_registration ON audit_log (registration_id, id) WHERE registration_id IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- A refund is recorded before the provider is called, its outcome after.
-- Its id is the provider's idempotency key.
CREATE TABLE refunds (
    id              TEXT    NOT NULL PRIMARY KEY,
    registration_id TEXT    NOT NULL REFERENCES registrations (id),
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('requested', 'pending', 'succeeded', 'failed')),
    reference       TEXT    NOT NULL DEFAULT '',
    error           TEXT    NOT NULL DEFAULT '',
    reason          TEXT    NOT NULL DEFAULT '',
    requested_by    TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
) STRICT;
CREATE INDEX refunds_registration ON refunds (registration_id, created_at);
CREATE INDEX refunds_state ON refunds (state);

-- Emails to an attendee besides the first confirmation: resent
-- confirmations and cancellation notices. Its id makes sending idempotent.
CREATE TABLE messages (
    id              TEXT NOT NULL PRIMARY KEY,
    registration_id TEXT NOT NULL REFERENCES registrations (id),
    kind            TEXT NOT NULL CHECK (kind IN ('confirmation', 'cancellation')),
    to_address      TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    reference       TEXT NOT NULL DEFAULT '',
    error           TEXT NOT NULL DEFAULT '',
    requested_by    TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;
CREATE INDEX messages_registration ON messages (registration_id, created_at);

-- What organisers must be told (a registration needs attention, a refund
-- failed, a charge stayed unresolved), sent in batches.
CREATE TABLE organiser_notices (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('needs_attention', 'refund_failed', 'payment_unresolved')),
    registration_id TEXT,
    detail          TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    sent_at         TEXT
) STRICT;
CREATE INDEX organiser_notices_unsent ON organiser_notices (id) WHERE sent_at IS NULL;
