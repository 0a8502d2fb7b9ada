package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

// Job kinds of data protection.
const (
	KindRetention    = "retention"
	KindForgetMember = "forget_member"
)

// OutboxEraser is a mailer that keeps copies of what it sent (the outbox)
// and can remove a registration's.
type OutboxEraser interface {
	Erase(registrationID string, messageIDs []string) (int, error)
}

// MemberForgetter is a mailing-list provider that can delete a member for
// good (Mailchimp's delete-permanent). MemberID is the provider's id of an
// address, which the job carries instead of the address itself.
type MemberForgetter interface {
	MemberID(email string) string
	ForgetMember(ctx context.Context, memberID string) error
}

// ForgetMemberArgs deletes one member from the mailing-list provider.
type ForgetMemberArgs struct {
	MemberID string `json:"member_id"`
}

// Kind implements river.JobArgs.
func (ForgetMemberArgs) Kind() string { return KindForgetMember }

// InsertOpts puts the call with the other mailing-list work (the provider
// allows few connections), one job per member at a time.
func (ForgetMemberArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMailingList, MaxAttempts: 10, UniqueOpts: river.UniqueOpts{ByArgs: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
			rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

// RetentionArgs erases the personal data of the event's registrations once
// the retention period after its end has passed.
type RetentionArgs struct{}

// Kind implements river.JobArgs.
func (RetentionArgs) Kind() string { return KindRetention }

// InsertOpts keeps one retention job waiting at a time.
func (RetentionArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: river.UniqueOpts{ByState: []rivertype.JobState{
		rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRunning,
		rivertype.JobStateRetryable, rivertype.JobStateScheduled}}}
}

// Erasure is what erasing a registration's personal data did.
type Erasure struct {
	// OutboxFiles is how many of its emails were removed from the outbox.
	OutboxFiles int
	// ListMember is set when its address is being deleted from the
	// mailing-list provider (a job).
	ListMember bool
}

// erase erases the personal data of reg (read just before; see
// OfficeStore.AnonymiseRegistration), inserting with insert the job that
// deletes its address at the mailing-list provider when it consented, and
// then removes its emails from the outbox.
func (d Deps) erase(ctx context.Context, reg registration.Registration, audit registration.AuditEntry,
	insert func(ctx context.Context, tx *sql.Tx, jobs ...river.InsertManyParams) error) (Erasure, error) {
	var e Erasure
	forget, _ := d.List.(MemberForgetter)
	_, messages, err := d.Office.AnonymiseRegistration(ctx, reg.ID, audit, func(ctx context.Context, tx *sql.Tx) error {
		e.ListMember = forget != nil && reg.Newsletter
		if !e.ListMember {
			return nil
		}
		return insert(ctx, tx, river.InsertManyParams{Args: ForgetMemberArgs{MemberID: forget.MemberID(reg.Email)}})
	})
	if err != nil {
		return Erasure{}, err
	}
	if ob, ok := d.Mailer.(OutboxEraser); ok {
		n, err := ob.Erase(reg.ID, messages)
		e.OutboxFiles = n
		if err != nil {
			return e, fmt.Errorf("erase %s from the outbox: %w", reg.ID, err)
		}
	}
	return e, nil
}

// Erase erases a registration's personal data for good (admin.Actions).
func (o *Office) Erase(ctx context.Context, by admin.Actor, id string) error {
	_, err := o.Anonymise(ctx, by, id)
	return err
}

// Anonymise erases a registration's personal data for good, audited
// without quoting it, and tells what it did. Erasing it again changes
// nothing and is registration.ErrAlreadyAnonymised; an unknown id is a
// CodeNotFound error.
func (o *Office) Anonymise(ctx context.Context, by admin.Actor, id string) (Erasure, error) {
	reg, err := o.registration(ctx, id)
	if err != nil {
		return Erasure{}, err
	}
	if reg.Anonymised() {
		return Erasure{}, registration.ErrAlreadyAnonymised
	}
	e, err := o.p.deps.erase(ctx, reg, o.audit(by, admin.ActionErase, id, "personal data erased"), o.insert)
	if errors.Is(err, registration.ErrNotFound) {
		return Erasure{}, notFound()
	}
	if err != nil && !errors.Is(err, registration.ErrAlreadyAnonymised) {
		return e, fmt.Errorf("erase %s: %w", id, err)
	}
	return e, err
}

// eraseLateCopy removes from the outbox what a send in flight while its
// registration was erased wrote after the erasure had cleaned the outbox.
// Only an outbox keeps copies, so only it pays the extra read.
func (d Deps) eraseLateCopy(ctx context.Context, id string, messageIDs ...string) {
	ob, ok := d.Mailer.(OutboxEraser)
	if !ok {
		return
	}
	reg, err := d.Store.Registration(ctx, id)
	if err != nil || !reg.Anonymised() {
		return
	}
	if _, err := ob.Erase(id, messageIDs); err != nil {
		d.Log.ErrorContext(ctx, "erasing an email of an erased registration from the outbox", "registration", id, "err", err)
	}
}

type retentionWorker struct {
	river.WorkerDefaults[RetentionArgs]
	d    Deps
	days int
	now  func() time.Time
}

// retentionBatch is how many registrations one listing of the retention
// job returns.
const retentionBatch = 100

// Work erases every registration of the event still holding personal data
// once the event ended more than the retention period ago, and records one
// audit entry with the count (none when there was nothing to erase).
func (w *retentionWorker) Work(ctx context.Context, job *river.Job[RetentionArgs]) error {
	due := w.d.Event.End().AddDate(0, 0, w.days)
	if w.now().Before(due) {
		return nil
	}
	client := river.ClientFromContext[*sql.Tx](ctx)
	insert := func(ctx context.Context, tx *sql.Tx, jobs ...river.InsertManyParams) error {
		_, err := client.InsertManyTx(ctx, tx, stampAll(ctx, jobs))
		return err
	}
	erased, files := 0, 0
	var failed error
	seen := map[string]bool{}
	for {
		ids, err := w.d.Office.RegistrationsToAnonymise(ctx, w.d.Event.ID, retentionBatch)
		if err != nil {
			failed = err
			break
		}
		var fresh []string
		for _, id := range ids {
			if !seen[id] {
				fresh = append(fresh, id)
				seen[id] = true
			}
		}
		if len(fresh) == 0 {
			break
		}
		for _, id := range fresh {
			reg, err := w.d.Store.Registration(ctx, id)
			if err != nil {
				failed = errors.Join(failed, fmt.Errorf("read %s: %w", id, err))
				continue
			}
			e, err := w.d.erase(ctx, reg, registration.AuditEntry{}, insert)
			if errors.Is(err, registration.ErrAlreadyAnonymised) {
				continue
			}
			if err != nil {
				failed = errors.Join(failed, err)
				continue
			}
			erased++
			files += e.OutboxFiles
		}
	}
	if erased > 0 {
		detail := strconv.Itoa(erased) + " registrations erased, " + strconv.Itoa(w.days) +
			" days after the event ended (REGISTRAR_RETENTION_DAYS)"
		if erased == 1 {
			detail = "1 registration erased, " + strconv.Itoa(w.days) + " days after the event ended (REGISTRAR_RETENTION_DAYS)"
		}
		actx, cancel := detached(ctx)
		defer cancel()
		if err := w.d.Office.Audit(actx, registration.AuditEntry{At: w.now().UTC(), Actor: "system",
			Action: admin.ActionRetention, Detail: detail}); err != nil {
			failed = errors.Join(failed, err)
		}
		w.d.Log.InfoContext(ctx, "retention: personal data erased", "registrations", erased, "outbox_files", files)
	}
	return failed
}

type forgetMemberWorker struct {
	river.WorkerDefaults[ForgetMemberArgs]
	forget MemberForgetter
}

// Work deletes the member at the provider; failures are retried with the
// pipeline's back-off.
func (w *forgetMemberWorker) Work(ctx context.Context, job *river.Job[ForgetMemberArgs]) error {
	if err := w.forget.ForgetMember(ctx, job.Args.MemberID); err != nil {
		if permanent(err) {
			return river.JobCancel(err)
		}
		return err
	}
	return nil
}
