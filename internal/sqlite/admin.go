package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
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
	err := s.db.Write.QueryRowContext(ctx, `INSERT INTO admin_accounts (email, password_hash, role, created_at, last_login_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING RETURNING id`,
		a.Email, a.PasswordHash, a.Role, formatTime(a.CreatedAt), nullTime(a.LastLoginAt)).Scan(&a.ID)
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
	var created string
	var last sql.NullString
	if err := sc.Scan(append([]any{&a.ID, &a.Email, &a.PasswordHash, &a.Role, &created, &last}, extra...)...); err != nil {
		return a, err
	}
	var err error
	if a.CreatedAt, err = parseTime(created); err != nil {
		return a, err
	}
	a.LastLoginAt, err = parseNullTime(last)
	return a, err
}

// AccountByEmail implements admin.Store.
func (s *Store) AccountByEmail(ctx context.Context, email string) (admin.Account, error) {
	a, err := scanAccount(s.db.Read.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM admin_accounts WHERE email = ?`, email))
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
	rows, err := s.db.Read.QueryContext(ctx, `SELECT `+accountColumns+` FROM admin_accounts ORDER BY email`)
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
	if err := s.db.Read.QueryRowContext(ctx, `SELECT count(*) FROM admin_accounts`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count accounts: %w", err)
	}
	return n, nil
}

// SetPassword implements admin.Store.
func (s *Store) SetPassword(ctx context.Context, accountID int64, hash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE admin_accounts SET password_hash = ? WHERE id = ?`, hash, accountID)
		if err != nil {
			return fmt.Errorf("set password: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return registration.ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE account_id = ?`, accountID); err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
		return nil
	})
}

// RecordLogin implements admin.Store.
func (s *Store) RecordLogin(ctx context.Context, accountID int64, at time.Time) error {
	if _, err := s.db.Write.ExecContext(ctx, `UPDATE admin_accounts SET last_login_at = ? WHERE id = ?`,
		formatTime(at), accountID); err != nil {
		return fmt.Errorf("record login: %w", err)
	}
	return nil
}

// CreateSession implements admin.Store.
func (s *Store) CreateSession(ctx context.Context, se admin.Session) error {
	if _, err := s.db.Write.ExecContext(ctx, `INSERT INTO admin_sessions (token_hash, account_id, created_at, last_seen_at,
		expires_at, address, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)`, se.TokenHash, se.AccountID, formatTime(se.CreatedAt),
		formatTime(se.LastSeenAt), formatTime(se.ExpiresAt), se.Address, truncate(se.UserAgent, 500)); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	return nil
}

// Session implements admin.Store.
func (s *Store) Session(ctx context.Context, tokenHash string) (admin.Session, admin.Account, error) {
	var se admin.Session
	var created, seen, expires string
	a, err := scanAccount(s.db.Read.QueryRowContext(ctx, `SELECT a.id, a.email, a.password_hash, a.role, a.created_at,
		a.last_login_at, s.token_hash, s.account_id, s.created_at, s.last_seen_at, s.expires_at, s.address, s.user_agent
		FROM admin_sessions s JOIN admin_accounts a ON a.id = s.account_id WHERE s.token_hash = ?`, tokenHash),
		&se.TokenHash, &se.AccountID, &created, &seen, &expires, &se.Address, &se.UserAgent)
	if errors.Is(err, sql.ErrNoRows) {
		return se, a, registration.ErrNotFound
	}
	if err != nil {
		return se, a, fmt.Errorf("read session: %w", err)
	}
	if se.CreatedAt, err = parseTime(created); err != nil {
		return se, a, err
	}
	if se.LastSeenAt, err = parseTime(seen); err != nil {
		return se, a, err
	}
	if se.ExpiresAt, err = parseTime(expires); err != nil {
		return se, a, err
	}
	return se, a, nil
}

// TouchSession implements admin.Store.
func (s *Store) TouchSession(ctx context.Context, tokenHash string, at time.Time) error {
	if _, err := s.db.Write.ExecContext(ctx, `UPDATE admin_sessions SET last_seen_at = ? WHERE token_hash = ?`,
		formatTime(at), tokenHash); err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession implements admin.Store.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := s.db.Write.ExecContext(ctx, `DELETE FROM admin_sessions WHERE token_hash = ?`, tokenHash); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// DeleteSessions implements admin.Store.
func (s *Store) DeleteSessions(ctx context.Context, accountID int64) error {
	if _, err := s.db.Write.ExecContext(ctx, `DELETE FROM admin_sessions WHERE account_id = ?`, accountID); err != nil {
		return fmt.Errorf("delete sessions: %w", err)
	}
	return nil
}

// DeleteExpiredSessions implements admin.Store.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now, idleBefore time.Time) (int, error) {
	res, err := s.db.Write.ExecContext(ctx, `DELETE FROM admin_sessions WHERE expires_at <= ? OR last_seen_at < ?`,
		formatTime(now), formatTime(idleBefore))
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
	list, err := json.Marshal(keys)
	if err != nil {
		return nil, fmt.Errorf("encode keys: %w", err)
	}
	rows, err := s.db.Read.QueryContext(ctx, `SELECT key, failures, last_failure_at, blocked_until FROM login_throttle
		WHERE key IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, fmt.Errorf("read login throttle: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key, last, blocked string
		var t admin.Throttle
		if err := rows.Scan(&key, &t.Failures, &last, &blocked); err != nil {
			return nil, fmt.Errorf("scan login throttle: %w", err)
		}
		if t.LastFailureAt, err = parseTime(last); err != nil {
			return nil, err
		}
		if t.BlockedUntil, err = parseTime(blocked); err != nil {
			return nil, err
		}
		out[key] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read login throttle: %w", err)
	}
	return out, nil
}

// SaveLoginThrottle implements admin.Store.
func (s *Store) SaveLoginThrottle(ctx context.Context, key string, t admin.Throttle) error {
	if _, err := s.db.Write.ExecContext(ctx, `INSERT INTO login_throttle (key, failures, last_failure_at, blocked_until)
		VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET failures = excluded.failures,
			last_failure_at = excluded.last_failure_at, blocked_until = excluded.blocked_until`,
		key, t.Failures, formatTime(t.LastFailureAt), formatTime(t.BlockedUntil)); err != nil {
		return fmt.Errorf("save login throttle: %w", err)
	}
	return nil
}

// ClearLoginThrottle implements admin.Store.
func (s *Store) ClearLoginThrottle(ctx context.Context, key string) error {
	if _, err := s.db.Write.ExecContext(ctx, `DELETE FROM login_throttle WHERE key = ?`, key); err != nil {
		return fmt.Errorf("clear login throttle: %w", err)
	}
	return nil
}

// AuditLog implements admin.Store.
func (s *Store) AuditLog(ctx context.Context, f admin.AuditFilter) ([]registration.AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.Actor != "" {
		add("actor = ?", f.Actor)
	}
	if f.Action != "" {
		add("action = ?", f.Action)
	}
	if f.RegistrationID != "" {
		add("registration_id = ?", f.RegistrationID)
	}
	if f.Before > 0 {
		add("id < ?", f.Before)
	}
	q := `SELECT id, at, actor, action, coalesce(registration_id, ''), detail, address FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limitOr(f.Limit, 100))
	rows, err := s.db.Read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []registration.AuditEntry
	for rows.Next() {
		var e registration.AuditEntry
		var at string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.RegistrationID, &e.Detail, &e.Address); err != nil {
			return nil, fmt.Errorf("scan audit entry: %w", err)
		}
		if e.At, err = parseTime(at); err != nil {
			return nil, err
		}
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
	var where []string
	var args []any
	if q := strings.TrimSpace(f.Query); q != "" {
		// The exact reference is found through its index once, not
		// compared row by row: every other term reads the index the scan
		// walks.
		where = append(where, `(instr(search, ?) > 0 OR id = ?
			OR id IN (SELECT id FROM registrations WHERE payment_reference = ? AND payment_reference <> ''))`)
		args = append(args, searchTerm(q), q, q)
	}
	if f.Ticket != "" {
		where = append(where, "ticket_id = ?")
		args = append(args, f.Ticket)
	}
	if f.Status != "" {
		where = append(where, "status = ?")
		args = append(args, f.Status)
	}
	if !f.From.IsZero() {
		where = append(where, "created_at >= ?")
		args = append(args, formatTime(f.From))
	}
	if !f.To.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, formatTime(f.To))
	}
	if !after.IsZero() {
		where = append(where, "(created_at, id) < (?, ?)")
		args = append(args, formatTime(after.CreatedAt), after.ID)
	}
	q := `SELECT ` + registrationColumns + ` FROM registrations`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	return q, append(args, limit)
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
	q, args := searchQuery(f, after, limit)
	rows, err := s.db.Read.QueryContext(ctx, q, args...)
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
// time: no read stays open while fn runs (it may write to a slow client).
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
		rows, err := s.db.Read.QueryContext(ctx, `SELECT email, first_name, last_name, consented_at, confirmed_at FROM mailing_list
			WHERE email > ? AND status = 'subscribed' ORDER BY email LIMIT ?`, after, eachPage)
		if err != nil {
			return fmt.Errorf("read mailing list: %w", err)
		}
		for rows.Next() {
			var sub admin.Subscriber
			var consented string
			var confirmed sql.NullString
			if err := rows.Scan(&sub.Email, &sub.FirstName, &sub.LastName, &consented, &confirmed); err != nil {
				rows.Close()
				return fmt.Errorf("scan subscriber: %w", err)
			}
			if sub.ConsentedAt, err = parseTime(consented); err != nil {
				rows.Close()
				return err
			}
			if sub.ConfirmedAt, err = parseNullTime(confirmed); err != nil {
				rows.Close()
				return err
			}
			page = append(page, sub)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
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

// Dashboard implements admin.Store. It reads in one read transaction, so
// its figures agree with each other.
func (s *Store) Dashboard(ctx context.Context, eventID string, since time.Time) (admin.Dashboard, error) {
	d := admin.Dashboard{
		Steps:     map[registration.StepStatus]int64{},
		Incidents: map[registration.IncidentKind]int64{},
	}
	tx, err := s.db.Read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return d, fmt.Errorf("dashboard: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT t.ticket_id, t.capacity,
		(SELECT count(*) FROM registrations r WHERE r.event_id = t.event_id AND r.ticket_id = t.ticket_id AND r.status <> 'cancelled'),
		(SELECT count(*) FROM seat_holds h WHERE h.event_id = t.event_id AND h.ticket_id = t.ticket_id)
		FROM ticket_stock t WHERE t.event_id = ? ORDER BY t.ticket_id`, eventID)
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
		coalesce(sum(CASE WHEN status = 'needs_attention' THEN 1 ELSE 0 END), 0),
		coalesce(sum(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END), 0)
		FROM registrations WHERE event_id = ?`, eventID).Scan(&d.Gross, &d.Refunded, &d.NeedsAttention, &d.Cancelled); err != nil {
		return d, fmt.Errorf("dashboard totals: %w", err)
	}
	rows, err = tx.QueryContext(ctx, `SELECT substr(created_at, 1, 10) AS day, count(*) FROM registrations
		WHERE event_id = ? AND created_at >= ? GROUP BY day ORDER BY day`, eventID, formatTime(since))
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
		WHERE r.event_id = ? AND r.status <> 'cancelled' AND s.status IN ('pending', 'running', 'retrying', 'failed')
		GROUP BY s.status`, eventID); err != nil {
		return d, fmt.Errorf("dashboard steps: %w", err)
	}
	if err := countInto(ctx, tx, d.Incidents, `SELECT kind, count(*) FROM payment_incidents GROUP BY kind`); err != nil {
		return d, fmt.Errorf("dashboard incidents: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(sum(CASE WHEN f.state = 'failed' THEN 1 ELSE 0 END), 0),
		coalesce(sum(CASE WHEN f.state IN ('requested', 'pending') THEN 1 ELSE 0 END), 0)
		FROM refunds f JOIN registrations r ON r.id = f.registration_id WHERE r.event_id = ?`, eventID).
		Scan(&d.RefundsFailed, &d.RefundsOpen); err != nil {
		return d, fmt.Errorf("dashboard refunds: %w", err)
	}
	return d, nil
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	return err
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
	rows, err := s.db.Read.QueryContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE registration_id = ?
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
	var updated string
	err := s.db.Read.QueryRowContext(ctx, `SELECT d.state, d.reference, d.updated_at, r.email FROM email_deliveries d
		JOIN registrations r ON r.id = d.registration_id WHERE d.registration_id = ?`, registrationID).
		Scan(&m.State, &m.Reference, &updated, &m.To)
	switch {
	case err == nil:
		m.RegistrationID, m.Kind = registrationID, registration.MessageConfirmation
		if m.UpdatedAt, err = parseTime(updated); err != nil {
			return nil, err
		}
		m.CreatedAt = m.UpdatedAt
		out = append(out, m)
	case !errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("read email delivery: %w", err)
	}
	rows, err := s.db.Read.QueryContext(ctx, `SELECT `+messageColumns+` FROM messages WHERE registration_id = ?
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

func (s *Store) incidents(ctx context.Context, query string, args ...any) ([]registration.Incident, error) {
	rows, err := s.db.Read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read incidents: %w", err)
	}
	defer rows.Close()
	var out []registration.Incident
	for rows.Next() {
		var in registration.Incident
		var created string
		if err := rows.Scan(&in.ID, &in.AttemptID, &in.Kind, &in.Provider, &in.Reference, &in.Amount, &in.Currency,
			&in.Detail, &created); err != nil {
			return nil, fmt.Errorf("scan incident: %w", err)
		}
		if in.CreatedAt, err = parseTime(created); err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read incidents: %w", err)
	}
	return out, nil
}

// Incidents implements admin.Store.
func (s *Store) Incidents(ctx context.Context, attemptID string) ([]registration.Incident, error) {
	return s.incidents(ctx, `SELECT `+incidentColumns+` FROM payment_incidents WHERE attempt_id = ? ORDER BY id`, attemptID)
}

// PaymentIncidents implements admin.Store.
func (s *Store) PaymentIncidents(ctx context.Context, f admin.IncidentFilter) ([]registration.Incident, error) {
	var where []string
	var args []any
	if len(f.Kinds) > 0 {
		kinds, err := json.Marshal(f.Kinds)
		if err != nil {
			return nil, fmt.Errorf("encode kinds: %w", err)
		}
		where = append(where, "kind IN (SELECT value FROM json_each(?))")
		args = append(args, string(kinds))
	}
	if f.Before > 0 {
		where = append(where, "id < ?")
		args = append(args, f.Before)
	}
	q := `SELECT ` + incidentColumns + ` FROM payment_incidents`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	return s.incidents(ctx, q, append(args, limitOr(f.Limit, 100))...)
}

// jsonInts encodes ids as a JSON array, for json_each.
func jsonInts(ids []int64) (string, error) {
	b, err := json.Marshal(ids)
	if err != nil {
		return "", fmt.Errorf("encode ids: %w", err)
	}
	return string(b), nil
}
