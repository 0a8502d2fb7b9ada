package admin

import (
	"context"
	"errors"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// Role is what an organiser account may do.
type Role string

// Roles, from most to least trusted.
const (
	RoleOwner   Role = "owner"   // everything: erasing personal data, accounts and the job console too
	RoleFinance Role = "finance" // staff's work plus refunds, cancellations and payment exports
	RoleStaff   Role = "staff"   // read, search, resend, retry, edit attendee details
)

// Roles lists every role, most trusted first.
var Roles = []Role{RoleOwner, RoleFinance, RoleStaff}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleOwner || r == RoleFinance || r == RoleStaff }

// Permission is one thing a role may or may not do.
type Permission int

// Permissions checked by every back-office page and action.
const (
	PermRead           Permission = iota // dashboard, lists, details, audit log
	PermEdit                             // resend, retry, edit attendee details, export without payment columns
	PermRefund                           // refund, cancel
	PermExportPayments                   // the payment columns of exports, a registration's data export
	PermErase                            // erase an attendee's personal data
	PermAccounts                         // organiser accounts
	PermJobs                             // the job console
)

// Can reports whether role r has permission p.
func (r Role) Can(p Permission) bool {
	switch r {
	case RoleOwner:
		return true
	case RoleFinance:
		return p <= PermExportPayments
	case RoleStaff:
		return p <= PermEdit
	}
	return false
}

// Account is an organiser's login.
type Account struct {
	ID           int64
	Email        string // lower-cased
	PasswordHash string // argon2id, PHC string format
	Role         Role
	CreatedAt    time.Time
	LastLoginAt  time.Time // zero before the first login
}

// Session is a logged-in browser. Only a hash of its token is stored.
type Session struct {
	TokenHash  string
	AccountID  int64
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // the absolute end of its life
	Address    string
	UserAgent  string
}

// Throttle is the failed-login record of one key (a client address or an
// account).
type Throttle struct {
	Failures      int
	LastFailureAt time.Time
	BlockedUntil  time.Time
}

// Filter selects registrations for the list, its export and the search.
type Filter struct {
	// Query matches part of a name, email or company, case-insensitively,
	// or a registration id or payment reference exactly.
	Query  string
	Ticket string              // "" for every ticket
	Status registration.Status // "" for every status
	// From and To bound the creation time: From <= created_at < To; zero
	// for no bound.
	From, To time.Time
	// After is the keyset cursor: only registrations listed after it
	// (older, newest first). Zero for the first page.
	After Cursor
	// Limit bounds a page; exports ignore it.
	Limit int
}

// Cursor is a position in the newest-first list of registrations.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// IsZero reports whether c is the start of the list.
func (c Cursor) IsZero() bool { return c.ID == "" }

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	Actor          string // exact
	Action         string // exact
	RegistrationID string // exact
	Before         int64  // keyset: entries with a smaller id; 0 for the newest
	Limit          int
}

// IncidentFilter selects payment incidents, newest first.
type IncidentFilter struct {
	Kinds  []registration.IncidentKind // none for all
	Before int64                       // keyset: smaller ids; 0 for the newest
	Limit  int
}

// TicketStats are the seats of one ticket.
type TicketStats struct {
	TicketID string
	Capacity int64
	Sold     int64 // registrations not cancelled
	Held     int64 // seats held by attempts being charged
}

// DayCount is the number of registrations created on one day (UTC).
type DayCount struct {
	Day   time.Time // midnight UTC
	Count int64
}

// Dashboard is the back office's overview of one event.
type Dashboard struct {
	Tickets []TicketStats
	// Money in the event's currency, minor units: Gross is every charge of
	// a registration, Refunded the successful refunds.
	Gross, Refunded int64
	// PerDay counts registrations per day since the requested day, oldest
	// first; days without registrations are absent.
	PerDay []DayCount
	// Steps counts the pipeline's steps by status (pending, running,
	// retrying, failed).
	Steps          map[registration.StepStatus]int64
	NeedsAttention int64
	Cancelled      int64
	// Incidents counts payment incidents by kind.
	Incidents map[registration.IncidentKind]int64
	// RefundsFailed and RefundsOpen count refunds failed, and requested or
	// pending.
	RefundsFailed, RefundsOpen int64
}

// Subscriber is one attendee of the local mailing list who consented and
// confirmed their address.
type Subscriber struct {
	Email       string
	FirstName   string
	LastName    string
	ConsentedAt time.Time
	// ConfirmedAt is when the address was confirmed; zero for addresses
	// subscribed before confirmation was asked.
	ConfirmedAt time.Time
}

// NewsletterState is where a registration's newsletter consent stands.
type NewsletterState struct {
	// ConfirmedAt is when the attendee confirmed their address; zero while
	// it is not.
	ConfirmedAt time.Time
	// Pending is set while the address awaits confirmation on the local
	// mailing list (never with a provider's list, which confirms by itself).
	Pending bool
}

// ErrAccountExists reports an account whose email is taken.
var ErrAccountExists = errors.New("an account with that email exists")

// Store is what the back office reads and keeps. Every method owns its
// transaction. Missing rows are registration.ErrNotFound.
type Store interface {
	// CreateAccount stores a new account and returns it with its id;
	// ErrAccountExists when the email is taken.
	CreateAccount(ctx context.Context, a Account) (Account, error)
	AccountByEmail(ctx context.Context, email string) (Account, error)
	// Accounts lists every account by email.
	Accounts(ctx context.Context) ([]Account, error)
	CountAccounts(ctx context.Context) (int, error)
	// SetPassword replaces an account's password hash and ends all of its
	// sessions, in one transaction.
	SetPassword(ctx context.Context, accountID int64, hash string) error
	RecordLogin(ctx context.Context, accountID int64, at time.Time) error

	CreateSession(ctx context.Context, s Session) error
	// Session returns a session and its account by token hash.
	Session(ctx context.Context, tokenHash string) (Session, Account, error)
	TouchSession(ctx context.Context, tokenHash string, at time.Time) error
	DeleteSession(ctx context.Context, tokenHash string) error
	// DeleteSessions ends every session of an account ("log out everywhere").
	DeleteSessions(ctx context.Context, accountID int64) error
	// DeleteExpiredSessions removes sessions whose absolute end or idle
	// limit (last seen before idleBefore) has passed.
	DeleteExpiredSessions(ctx context.Context, now, idleBefore time.Time) (int, error)

	// LoginThrottle returns the records of the keys that have one.
	LoginThrottle(ctx context.Context, keys []string) (map[string]Throttle, error)
	SaveLoginThrottle(ctx context.Context, key string, t Throttle) error
	ClearLoginThrottle(ctx context.Context, key string) error

	Audit(ctx context.Context, e registration.AuditEntry) error
	AuditLog(ctx context.Context, f AuditFilter) ([]registration.AuditEntry, error)

	// Registration returns one registration with its steps (their full
	// last errors included), billing address, refunded amount and
	// cancellation time.
	Registration(ctx context.Context, id string) (registration.Registration, error)
	// SearchRegistrations returns up to f.Limit registrations (without
	// steps) matching f, newest first, after f.After.
	SearchRegistrations(ctx context.Context, f Filter) ([]registration.Registration, error)
	// EachRegistration calls fn for every registration matching f (f.Limit
	// ignored), newest first, reading in pages so memory stays constant.
	EachRegistration(ctx context.Context, f Filter, fn func(registration.Registration) error) error
	// EachSubscriber calls fn for every subscribed attendee of the local
	// mailing list, by email: those still to confirm are left out.
	EachSubscriber(ctx context.Context, fn func(Subscriber) error) error
	// NewsletterState returns where a registration's newsletter consent
	// stands.
	NewsletterState(ctx context.Context, registrationID string) (NewsletterState, error)
	// Dashboard summarises event eventID, counting registrations per day
	// from since.
	Dashboard(ctx context.Context, eventID string, since time.Time) (Dashboard, error)

	// Refunds, Messages and Incidents of one registration, oldest first.
	// Messages include the pipeline's first confirmation (ID "").
	Refunds(ctx context.Context, registrationID string) ([]registration.Refund, error)
	Messages(ctx context.Context, registrationID string) ([]registration.Message, error)
	Incidents(ctx context.Context, attemptID string) ([]registration.Incident, error)
	// PaymentIncidents lists incidents of every attempt, newest first.
	PaymentIncidents(ctx context.Context, f IncidentFilter) ([]registration.Incident, error)
}
