-- Kept in step with internal/sqlite/migrations/0003_back_office.sql.
--
-- The back office: a registration can be cancelled and refunded, keeps its
-- billing address and when newsletter consent was given; organiser accounts,
-- their sessions, login throttling, the audit log, refunds, emails sent
-- besides the confirmation, and notices waiting to be sent to organisers.
ALTER TABLE registrations DROP CONSTRAINT registrations_status_check;
ALTER TABLE registrations ADD CONSTRAINT registrations_status_check
    CHECK (status IN ('paid', 'processing', 'completed', 'needs_attention', 'cancelled'));
ALTER TABLE registrations
    ADD COLUMN newsletter_consented_at timestamptz,
    ADD COLUMN billing_line1       text NOT NULL DEFAULT '',
    ADD COLUMN billing_line2       text NOT NULL DEFAULT '',
    ADD COLUMN billing_city        text NOT NULL DEFAULT '',
    ADD COLUMN billing_postal_code text NOT NULL DEFAULT '',
    ADD COLUMN billing_region      text NOT NULL DEFAULT '',
    ADD COLUMN billing_country     text NOT NULL DEFAULT '',
    -- refunded is the sum of successful refunds; reserved adds the refunds
    -- requested and not yet failed, so that concurrent requests can never
    -- add up to more than the charge.
    ADD COLUMN refunded        bigint NOT NULL DEFAULT 0,
    ADD COLUMN refund_reserved bigint NOT NULL DEFAULT 0,
    ADD COLUMN cancelled_at    timestamptz,
    -- search is what the back office's search matches a part of: first and
    -- last name, email and company, lower-cased, separated by U+001F so
    -- that no match spans two of them.
    ADD COLUMN search          text NOT NULL DEFAULT '',
    ADD CONSTRAINT registrations_refunded_check CHECK (refunded >= 0 AND refunded <= amount),
    ADD CONSTRAINT registrations_refund_reserved_check CHECK (refund_reserved >= refunded AND refund_reserved <= amount);
UPDATE registrations SET newsletter_consented_at = CASE WHEN newsletter THEN created_at END,
    search = lower(first_name || ' ' || last_name || chr(31) || email || chr(31) || company);
DROP INDEX registrations_status;
CREATE INDEX registrations_status ON registrations (status, created_at DESC, id DESC);
-- The back office lists newest first, by keyset; a search walks this index
-- alone (it holds what the search matches) and reads only the rows found.
CREATE INDEX registrations_created ON registrations (created_at DESC, id DESC) INCLUDE (search);
CREATE INDEX registrations_email ON registrations (lower(email));
CREATE INDEX registrations_reference ON registrations (payment_reference) WHERE payment_reference <> '';

CREATE TABLE admin_accounts (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('owner', 'finance', 'staff')),
    created_at    timestamptz NOT NULL,
    last_login_at timestamptz
);

-- Sessions keep a hash of the token only: the cookie is the only copy.
CREATE TABLE admin_sessions (
    token_hash   text        NOT NULL PRIMARY KEY,
    account_id   bigint      NOT NULL REFERENCES admin_accounts (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    address      text        NOT NULL DEFAULT '',
    user_agent   text        NOT NULL DEFAULT ''
);
CREATE INDEX admin_sessions_account ON admin_sessions (account_id);

-- Failed logins per client address ("addr:...") and per account
-- ("account:..."), with when the next attempt is allowed.
CREATE TABLE login_throttle (
    key             text        NOT NULL PRIMARY KEY,
    failures        integer     NOT NULL,
    last_failure_at timestamptz NOT NULL,
    blocked_until   timestamptz NOT NULL
);

-- Every back-office action and login: who, when, what, from where.
CREATE TABLE audit_log (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL,
    actor           text        NOT NULL,
    action          text        NOT NULL,
    registration_id text,
    detail          text        NOT NULL DEFAULT '',
    address         text        NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_registration ON audit_log (registration_id, id) WHERE registration_id IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_action ON audit_log (action, id);

-- A refund is recorded before the provider is called, its outcome after.
-- Its id is the provider's idempotency key.
CREATE TABLE refunds (
    id              text        NOT NULL PRIMARY KEY,
    registration_id text        NOT NULL REFERENCES registrations (id),
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('requested', 'pending', 'succeeded', 'failed')),
    reference       text        NOT NULL DEFAULT '',
    error           text        NOT NULL DEFAULT '',
    reason          text        NOT NULL DEFAULT '',
    requested_by    text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX refunds_registration ON refunds (registration_id, created_at);
CREATE INDEX refunds_state ON refunds (state);

-- Emails to an attendee besides the first confirmation: resent
-- confirmations and cancellation notices. Its id makes sending idempotent.
CREATE TABLE messages (
    id              text        NOT NULL PRIMARY KEY,
    registration_id text        NOT NULL REFERENCES registrations (id),
    kind            text        NOT NULL CHECK (kind IN ('confirmation', 'cancellation')),
    to_address      text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    reference       text        NOT NULL DEFAULT '',
    error           text        NOT NULL DEFAULT '',
    requested_by    text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX messages_registration ON messages (registration_id, created_at);

-- What organisers must be told (a registration needs attention, a refund
-- failed, a charge stayed unresolved), sent in batches.
CREATE TABLE organiser_notices (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL CHECK (kind IN ('needs_attention', 'refund_failed', 'payment_unresolved')),
    registration_id text,
    detail          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    sent_at         timestamptz
);
CREATE INDEX organiser_notices_unsent ON organiser_notices (id) WHERE sent_at IS NULL;
