package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

// CreateAccount implements admin.Store.
func (s *Store) CreateAccount(ctx context.Context, a admin.Account) (admin.Account, error) {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = s.now()
	}
	a.CreatedAt = a.CreatedAt.UTC().Truncate(time.Microsecond)
	err := s.db.SQL.QueryRowContext(ctx, `INSERT INTO admin_accounts (email, password_hash, role, created_at, last_login_at)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING id`,
		a.Email, a.PasswordHash, a.Role, a.CreatedAt, nullTime(a.LastLoginAt)).Scan(&a.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return a, admin.ErrAccountExists
	}
	if err != nil {
		return a, fmt.Errorf("create account: %w", err)
	}
	return a, nil
}

const accountColumns = `id, email, password_hash, role, created_at, last_login_at`

func scanAccount(sc scanner, extra ...any) (admin.Account, error) {
	var a admin.Account
	var last sql.NullTime
	if err := sc.Scan(append([]any{&a.ID, &a.Email, &a.PasswordHash, &a.Role, &a.CreatedAt, &last}, extra...)...); err != nil {
		return a, err
	}
	a.CreatedAt, a.LastLoginAt = a.CreatedAt.UTC(), fromNull(last)
	return a, nil
}

// AccountByEmail implements admin.Store.
func (s *Store) AccountByEmail(ctx context.Context, email string) (admin.Account, error) {
	a, err := scanAccount(s.db.SQL.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM admin_accounts WHERE email = $1`, email))
	if errors.Is(err, sql.ErrNoRows) {
		return a, registration.ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("read account: %w", err)
	}
	return a, nil
}

// Accounts implements admin.Store.
func (s *Store) Accounts(ctx context.Context) ([]admin.Account, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT `+accountColumns+` FROM admin_accounts ORDER BY email`)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []admin.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, fmt.Errorf("scan account: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}

// CountAccounts implements admin.Store.
func (s *Store) CountAccounts(ctx context.Context) (int, error) {
	var n int
	if err := s.db.SQL.QueryRowContext(ctx, `SELECT count(*) FROM admin_accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count accounts: %w", err)
	}
	return n, nil
}

// SetPassword implements admin.Store.
func (s *Store) SetPassword(ctx context.Context, accountID int64, hash string) error {
	return s.Write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE admin_accounts SET password_hash = $1 WHERE id = $2`, hash, accountID)
		if err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return registration.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE account_id = $1`, accountID); err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
		return nil
	})
}

// RecordLogin implements admin.Store.
func (s *Store) RecordLogin(ctx context.Context, accountID int64, at time.Time) error {
	if _, err := s.db.SQL.ExecContext(ctx, `UPDATE admin_accounts SET last_login_at = $1 WHERE id = $2`,
		at.UTC(), accountID); err != nil {
		return fmt.Errorf("record login: %w", err)
	}
	return nil
}

// CreateSession implements admin.Store.
func (s *Store) CreateSession(ctx context.Context, se admin.Session) error {
	if _, err := s.db.SQL.ExecContext(ctx, `INSERT INTO admin_sessions (token_hash, account_id, created_at, last_seen_at,
		expires_at, address, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7)`, se.TokenHash, se.AccountID, se.CreatedAt.UTC(),
		se.LastSeenAt.UTC(), se.ExpiresAt.UTC(), se.Address, truncate(se.UserAgent, 500)); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// Session implements admin.Store.
func (s *Store) Session(ctx context.Context, tokenHash string) (admin.Session, admin.Account, error) {
	var se admin.Session
	a, err := scanAccount(s.db.SQL.QueryRowContext(ctx, `SELECT a.id, a.email, a.password_hash, a.role, a.created_at,
		a.last_login_at, s.token_hash, s.account_id, s.created_at, s.last_seen_at, s.expires_at, s.address, s.user_agent
		FROM admin_sessions s JOIN admin_accounts a ON a.id = s.account_id WHERE s.token_hash = $1`, tokenHash),
		&se.TokenHash, &se.AccountID, &se.CreatedAt, &se.LastSeenAt, &se.ExpiresAt, &se.Address, &se.UserAgent)
	if errors.Is(err, sql.ErrNoRows) {
		return se, a, registration.ErrNotFound
	}
	if err != nil {
		return se, a, fmt.Errorf("read session: %w", err)
	}
	se.CreatedAt, se.LastSeenAt, se.ExpiresAt = se.CreatedAt.UTC(), se.LastSeenAt.UTC(), se.ExpiresAt.UTC()
	return se, a, nil
}

// TouchSession implements admin.Store.
func (s *Store) TouchSession(ctx context.Context, tokenHash string, at time.Time) error {
	if _, err := s.db.SQL.ExecContext(ctx, `UPDATE admin_sessions SET last_seen_at = $1 WHERE token_hash = $2`,
		at.UTC(), tokenHash); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession implements admin.Store.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := s.db.SQL.ExecContext(ctx, `DELETE FROM admin_sessions WHERE token_hash = $1`, tokenHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteSessions implements admin.Store.
func (s *Store) DeleteSessions(ctx context.Context, accountID int64) error {
	if _, err := s.db.SQL.ExecContext(ctx, `DELETE FROM admin_sessions WHERE account_id = $1`, accountID); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

// DeleteExpiredSessions implements admin.Store.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now, idleBefore time.Time) (int, error) {
	res, err := s.db.SQL.ExecContext(ctx, `DELETE FROM admin_sessions WHERE expires_at <= $1 OR last_seen_at < $2`,
		now.UTC(), idleBefore.UTC())
	if err != nil {
		return 0, fmt.Errorf("delete expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// LoginThrottle implements admin.Store.
func (s *Store) LoginThrottle(ctx context.Context, keys []string) (map[string]admin.Throttle, error) {
	out := map[string]admin.Throttle{}
	if len(keys) == 0 {
		return out, nil
	}
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT key, failures, last_failure_at, blocked_until FROM login_throttle
		WHERE key = ANY($1)`, keys)
	if err != nil {
		return nil, fmt.Errorf("read login throttle: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var t admin.Throttle
		if err := rows.Scan(&key, &t.Failures, &t.LastFailureAt, &t.BlockedUntil); err != nil {
			return nil, fmt.Errorf("scan login throttle: %w", err)
		}
		t.LastFailureAt, t.BlockedUntil = t.LastFailureAt.UTC(), t.BlockedUntil.UTC()
		out[key] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read login throttle: %w", err)
	}
	return out, nil
}

// SaveLoginThrottle implements admin.Store.
func (s *Store) SaveLoginThrottle(ctx context.Context, key string, t admin.Throttle) error {
	if _, err := s.db.SQL.ExecContext(ctx, `INSERT INTO login_throttle (key, failures, last_failure_at, blocked_until)
		VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
			last_failure_at = excluded.last_failure_at, blocked_until = excluded.blocked_until`,
		key, t.Failures, t.LastFailureAt.UTC(), t.BlockedUntil.UTC()); err != nil {
		return fmt.Errorf("save login throttle: %w", err)
	}
	return nil
}

// ClearLoginThrottle implements admin.Store.
func (s *Store) ClearLoginThrottle(ctx context.Context, key string) error {
	if _, err := s.db.SQL.ExecContext(ctx, `DELETE FROM login_throttle WHERE key = $1`, key); err != nil {
		return fmt.Errorf("clear login throttle: %w", err)
	}
	return nil
}

// query builds a statement with numbered parameters.
type query struct {
	where []string
	args  []any
}

// arg adds a parameter and returns its placeholder.
func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

func (q *query) and(cond string) { q.where = append(q.where, cond) }

func (q *query) whereClause() string {
	if len(q.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(q.where, " AND ")
}

// AuditLog implements admin.Store.
func (s *Store) AuditLog(ctx context.Context, f admin.AuditFilter) ([]registration.AuditEntry, error) {
	var q query
	if f.Actor != "" {
		q.and("actor = " + q.arg(f.Actor))
	}
	if f.Action != "" {
		q.and("action = " + q.arg(f.Action))
	}
	if f.RegistrationID != "" {
		q.and("registration_id = " + q.arg(f.RegistrationID))
	}
	if f.Before > 0 {
		q.and("id < " + q.arg(f.Before))
	}
	stmt := `SELECT id, at, actor, action, coalesce(registration_id, ''), detail, address FROM audit_log` +
		q.whereClause() + " ORDER BY id DESC LIMIT " + q.arg(limitOr(f.Limit, 100))
	rows, err := s.db.SQL.QueryContext(ctx, stmt, q.args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []registration.AuditEntry
	for rows.Next() {
		var e registration.AuditEntry
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.RegistrationID, &e.Detail, &e.Address); err != nil {
			return nil, fmt.Errorf("scan audit entry: %w", err)
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return out, nil
}

func limitOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// searchQuery is the query of one page of registrations matching f after
// the cursor, newest first. Each condition is present only when asked for,
// so that the planner walks the index that fits: registrations_status for a
// status, registrations_created otherwise, stopping after the page.
func searchQuery(f admin.Filter, after admin.Cursor, limit int) (string, []any) {
	var q query
	if text := strings.TrimSpace(f.Query); text != "" {
		// The exact reference is found through its index once (a hashed
		// subplan), not compared row by row: every other term reads the
		// index the scan walks.
		exact := q.arg(text)
		q.and(`(strpos(search, ` + q.arg(searchTerm(text)) + `) > 0 OR id = ` + exact +
			` OR id IN (SELECT id FROM registrations WHERE payment_reference = ` + exact + ` AND payment_reference <> ''))`)
	}
	if f.Ticket != "" {
		q.and("ticket_id = " + q.arg(f.Ticket))
	}
	if f.Status != "" {
		q.and("status = " + q.arg(string(f.Status)))
	}
	if !f.From.IsZero() {
		q.and("created_at >= " + q.arg(f.From.UTC()))
	}
	if !f.To.IsZero() {
		q.and("created_at < " + q.arg(f.To.UTC()))
	}
	if !after.IsZero() {
		q.and("(created_at, id) < (" + q.arg(after.CreatedAt.UTC()) + ", " + q.arg(after.ID) + ")")
	}
	stmt := `SELECT ` + registrationColumns + ` FROM registrations` + q.whereClause() +
		" ORDER BY created_at DESC, id DESC LIMIT " + q.arg(limit)
	return stmt, q.args
}

// searchTerm is what a query must be a part of in the search column.
func searchTerm(q string) string { return strings.ToLower(strings.ReplaceAll(q, searchSep, "")) }

// SearchRegistrations implements admin.Store.
func (s *Store) SearchRegistrations(ctx context.Context, f admin.Filter) ([]registration.Registration, error) {
	return s.searchPage(ctx, f, f.After, limitOr(f.Limit, 50), nil)
}

// searchPage appends to out the page of registrations matching f after the
// cursor.
func (s *Store) searchPage(ctx context.Context, f admin.Filter, after admin.Cursor, limit int,
	out []registration.Registration) ([]registration.Registration, error) {
	stmt, args := searchQuery(f, after, limit)
	rows, err := s.db.SQL.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("search registrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRegistration(rows)
		if err != nil {
			return nil, fmt.Errorf("scan registration: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search registrations: %w", err)
	}
	return out, nil
}

// eachPage is how many rows EachRegistration and EachSubscriber read at a
// time: no query stays open while fn runs (it may write to a slow client).
const eachPage = 500

// EachRegistration implements admin.Store: page after page by keyset, so
// memory stays that of one page whatever the number of registrations.
func (s *Store) EachRegistration(ctx context.Context, f admin.Filter, fn func(registration.Registration) error) error {
	after := f.After
	page := make([]registration.Registration, 0, eachPage)
	for {
		var err error
		page, err = s.searchPage(ctx, f, after, eachPage, page[:0])
		if err != nil {
			return err
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < eachPage {
			return nil
		}
		last := page[len(page)-1]
		after = admin.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
}

// EachSubscriber implements admin.Store, by email, a page at a time.
func (s *Store) EachSubscriber(ctx context.Context, fn func(admin.Subscriber) error) error {
	after := ""
	page := make([]admin.Subscriber, 0, eachPage)
	for {
		page = page[:0]
		rows, err := s.db.SQL.QueryContext(ctx, `SELECT email, first_name, last_name, consented_at, confirmed_at FROM mailing_list
			WHERE email > $1 AND status = 'subscribed' ORDER BY email LIMIT $2`, after, eachPage)
		if err != nil {
			return fmt.Errorf("read mailing list: %w", err)
		}
		for rows.Next() {
			var sub admin.Subscriber
			var confirmed sql.NullTime
			if err := rows.Scan(&sub.Email, &sub.FirstName, &sub.LastName, &sub.ConsentedAt, &confirmed); err != nil {
				rows.Close()
				return fmt.Errorf("scan subscriber: %w", err)
			}
			sub.ConsentedAt, sub.ConfirmedAt = sub.ConsentedAt.UTC(), fromNull(confirmed)
			page = append(page, sub)
		}
		if err := closeRows(rows); err != nil {
			return fmt.Errorf("read mailing list: %w", err)
		}
		for _, sub := range page {
			if err := fn(sub); err != nil {
				return err
			}
		}
		if len(page) < eachPage {
			return nil
		}
		after = page[len(page)-1].Email
	}
}

// Dashboard implements admin.Store. It reads in one repeatable-read
// transaction, so its figures agree with each other.
func (s *Store) Dashboard(ctx context.Context, eventID string, since time.Time) (admin.Dashboard, error) {
	d := admin.Dashboard{
		Steps:     map[registration.StepStatus]int64{},
		Incidents: map[registration.IncidentKind]int64{},
	}
	tx, err := s.db.SQL.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT t.ticket_id, t.capacity,
		(SELECT count(*) FROM registrations r WHERE r.event_id = t.event_id AND r.ticket_id = t.ticket_id AND r.status <> 'cancelled'),
		(SELECT count(*) FROM seat_holds h WHERE h.event_id = t.event_id AND h.ticket_id = t.ticket_id)
		FROM ticket_stock t WHERE t.event_id = $1 ORDER BY t.ticket_id`, eventID)
	if err != nil {
		return d, fmt.Errorf("dashboard tickets: %w", err)
	}
	for rows.Next() {
		var ts admin.TicketStats
		if err := rows.Scan(&ts.TicketID, &ts.Capacity, &ts.Sold, &ts.Held); err != nil {
			rows.Close()
			return d, fmt.Errorf("dashboard tickets: %w", err)
		}
		d.Tickets = append(d.Tickets, ts)
	}
	if err := closeRows(rows); err != nil {
		return d, fmt.Errorf("dashboard tickets: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(amount), 0), coalesce(sum(refunded), 0),
		count(*) FILTER (WHERE status = 'needs_attention'), count(*) FILTER (WHERE status = 'cancelled')
		FROM registrations WHERE event_id = $1`, eventID).Scan(&d.Gross, &d.Refunded, &d.NeedsAttention, &d.Cancelled); err != nil {
		return d, fmt.Errorf("dashboard totals: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)
		FROM registrations WHERE event_id = $1 AND created_at >= $2 GROUP BY day ORDER BY day`, eventID, since.UTC())
	if err != nil {
		return d, fmt.Errorf("dashboard days: %w", err)
	}
	for rows.Next() {
		var day string
		var dc admin.DayCount
		if err := rows.Scan(&day, &dc.Count); err != nil {
			rows.Close()
			return d, fmt.Errorf("dashboard days: %w", err)
		}
		if dc.Day, err = time.Parse(time.DateOnly, day); err != nil {
			rows.Close()
			return d, fmt.Errorf("dashboard days: %w", err)
		}
		d.PerDay = append(d.PerDay, dc)
	}
	if err := closeRows(rows); err != nil {
		return d, fmt.Errorf("dashboard days: %w", err)
	}
	if err := countInto(ctx, tx, d.Steps, `SELECT s.status, count(*) FROM registration_steps s
		JOIN registrations r ON r.id = s.registration_id
		WHERE r.event_id = $1 AND r.status <> 'cancelled' AND s.status IN ('pending', 'running', 'retrying', 'failed')
		GROUP BY s.status`, eventID); err != nil {
		return d, fmt.Errorf("dashboard steps: %w", err)
	}
	if err := countInto(ctx, tx, d.Incidents, `SELECT kind, count(*) FROM payment_incidents GROUP BY kind`); err != nil {
		return d, fmt.Errorf("dashboard incidents: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE f.state = 'failed'),
		count(*) FILTER (WHERE f.state IN ('requested', 'pending'))
		FROM refunds f JOIN registrations r ON r.id = f.registration_id WHERE r.event_id = $1`, eventID).
		Scan(&d.RefundsFailed, &d.RefundsOpen); err != nil {
		return d, fmt.Errorf("dashboard refunds: %w", err)
	}
	return d, nil
}

// countInto adds the (key, count) rows of query to m.
func countInto[K ~string](ctx context.Context, tx *sql.Tx, m map[K]int64, query string, args ...any) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var k K
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			rows.Close()
			return err
		}
		m[k] = n
	}
	return closeRows(rows)
}

// Refunds implements admin.Store.
func (s *Store) Refunds(ctx context.Context, registrationID string) ([]registration.Refund, error) {
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE registration_id = $1
		ORDER BY created_at, id`, registrationID)
	if err != nil {
		return nil, fmt.Errorf("read refunds: %w", err)
	}
	defer rows.Close()
	var out []registration.Refund
	for rows.Next() {
		rf, err := scanRefund(rows)
		if err != nil {
			return nil, fmt.Errorf("scan refund: %w", err)
		}
		out = append(out, rf)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read refunds: %w", err)
	}
	return out, nil
}

// Messages implements admin.Store: the pipeline's confirmation first (ID
// "", when it was attempted), then the messages organisers asked for.
func (s *Store) Messages(ctx context.Context, registrationID string) ([]registration.Message, error) {
	var out []registration.Message
	var m registration.Message
	err := s.db.SQL.QueryRowContext(ctx, `SELECT d.state, d.reference, d.updated_at, r.email FROM email_deliveries d
		JOIN registrations r ON r.id = d.registration_id WHERE d.registration_id = $1`, registrationID).
		Scan(&m.State, &m.Reference, &m.UpdatedAt, &m.To)
	switch {
	case err == nil:
		m.RegistrationID, m.Kind = registrationID, registration.MessageConfirmation
		m.UpdatedAt = m.UpdatedAt.UTC()
		m.CreatedAt = m.UpdatedAt
		out = append(out, m)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("read email delivery: %w", err)
	}
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE registration_id = $1
		ORDER BY created_at, id`, registrationID)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("scan message: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	return out, nil
}

const incidentColumns = `id, attempt_id, kind, provider, reference, amount, currency, detail, created_at`

func (s *Store) incidents(ctx context.Context, stmt string, args ...any) ([]registration.Incident, error) {
	rows, err := s.db.SQL.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, fmt.Errorf("read incidents: %w", err)
	}
	defer rows.Close()
	var out []registration.Incident
	for rows.Next() {
		var in registration.Incident
		if err := rows.Scan(&in.ID, &in.AttemptID, &in.Kind, &in.Provider, &in.Reference, &in.Amount, &in.Currency,
			&in.Detail, &in.CreatedAt); err != nil {
			return nil, fmt.Errorf("scan incident: %w", err)
		}
		in.CreatedAt = in.CreatedAt.UTC()
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read incidents: %w", err)
	}
	return out, nil
}

// Incidents implements admin.Store.
func (s *Store) Incidents(ctx context.Context, attemptID string) ([]registration.Incident, error) {
	return s.incidents(ctx, `SELECT `+incidentColumns+` FROM payment_incidents WHERE attempt_id = $1 ORDER BY id`, attemptID)
}

// PaymentIncidents implements admin.Store.
func (s *Store) PaymentIncidents(ctx context.Context, f admin.IncidentFilter) ([]registration.Incident, error) {
	var q query
	if len(f.Kinds) > 0 {
		kinds := make([]string, len(f.Kinds))
		for i, k := range f.Kinds {
			kinds[i] = string(k)
		}
		q.and("kind = ANY(" + q.arg(kinds) + ")")
	}
	if f.Before > 0 {
		q.and("id < " + q.arg(f.Before))
	}
	stmt := `SELECT ` + incidentColumns + ` FROM payment_incidents` + q.whereClause() +
		" ORDER BY id DESC LIMIT " + q.arg(limitOr(f.Limit, 100))
	return s.incidents(ctx, stmt, q.args...)
}
