package pipeline_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/mailchimp"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/providertest"
	"github.com/registrar/registrar/internal/registration"
)

// Erase lets the test mailer's outbox forget a registration's emails, as
// the outbox mailer does.
func (m *testMailer) Erase(registrationID string, messageIDs []string) (int, error) {
	return m.outbox.Erase(registrationID, messageIDs)
}

// TestOfficeErase: a registration erased before its pipeline ran is saved
// as an order with the erased details, but gets no email and no
// mailing-list entry; both steps are skipped with a notice and it
// completes. Erasing again changes nothing; it can no longer be emailed or
// edited.
func TestOfficeErase(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{stopped: true})
		ctx := t.Context()
		req := request(3, true)
		id, err := h.svc.Register(ctx, req, "")
		if err != nil {
			t.Fatal(err)
		}
		e, err := h.office.Anonymise(ctx, organiser, id)
		if err != nil {
			t.Fatalf("Anonymise: %v", err)
		}
		if e.ListMember {
			t.Error("the local list has no provider member to delete")
		}
		if _, err := h.office.Anonymise(ctx, organiser, id); !errors.Is(err, registration.ErrAlreadyAnonymised) {
			t.Errorf("second Anonymise = %v; want ErrAlreadyAnonymised", err)
		}
		notFoundError(t, h.office.Erase(ctx, organiser, "nosuchregistrationnosuchregistra"))
		h.start(t)
		r := h.waitStatus(t, id, registration.StatusCompleted)
		for _, step := range []registration.StepName{registration.StepSendConfirmation, registration.StepAddToMailingList} {
			if st := checkStep(t, r, step, registration.StepSkipped, 0); st.LastError != registration.ErasedStepNotice {
				t.Errorf("%s: notice %q; want %q", step, st.LastError, registration.ErasedStepNotice)
			}
		}
		checkStep(t, r, registration.StepSaveOrder, registration.StepSucceeded, 1)
		if n := h.mailer.Calls(); n != 0 {
			t.Errorf("%d emails sent to an erased registration", n)
		}
		if entries, err := os.ReadDir(h.outboxDir); err != nil || len(entries) != 0 {
			t.Errorf("outbox after the erasure: %d files, %v; want none", len(entries), err)
		}
		if ns, err := h.store.NewsletterState(ctx, id); err != nil || ns.Pending || !ns.ConfirmedAt.IsZero() {
			t.Errorf("newsletter state of an erased registration: %+v, %v", ns, err)
		}
		if r.Email != registration.ErasedEmail(id) || r.FirstName != registration.ErasedName || r.Amount != 14900 {
			t.Errorf("erased registration: %+v", r)
		}
		fieldError(t, h.office.Resend(ctx, organiser, id, "", "k-after"), "to")
		var re *registration.Error
		if err := h.office.Edit(ctx, organiser, id, registration.AttendeeEdit{FirstName: "Ada", LastName: "Lovelace",
			Email: "ada@example.org"}); !errors.As(err, &re) || re.Code != registration.CodeValidationFailed {
			t.Errorf("edit of an erased registration: %v; want validation_failed", err)
		}
		var erasures int
		for _, a := range h.audit(t, id) {
			if a.Action == admin.ActionErase {
				erasures++
				if a.Actor != organiser.Email || a.At.IsZero() || strings.Contains(strings.ToLower(a.Detail), "example.org") {
					t.Errorf("erase audit entry %+v", a)
				}
			}
		}
		if erasures != 1 {
			t.Errorf("%d erase audit entries; want 1", erasures)
		}
	})
}

// TestRetention: with REGISTRAR_RETENTION_DAYS set, once the event ended
// that many days ago the periodic job erases every registration of it, its
// emails in the outbox too, and records one audit entry with the count.
func TestRetention(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{stopped: true, retentionDays: 30})
		ctx := t.Context()
		var ids []string
		for i := range 3 {
			ids = append(ids, h.register(t, "standard", 20+i))
		}
		// The event took place 31 days ago (the registrations were taken
		// before it; the workers start after this change).
		h.ev.StartsAt = time.Now().AddDate(0, 0, -32)
		h.ev.EndsAt = time.Now().AddDate(0, 0, -31)
		h.start(t)
		deadline := time.Now().Add(waitFor)
		for {
			entries, err := h.store.AuditLog(ctx, admin.AuditFilter{Action: admin.ActionRetention, Limit: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) > 0 {
				if len(entries) != 1 || entries[0].Actor != "system" || !strings.HasPrefix(entries[0].Detail, "3 registrations erased") {
					t.Errorf("retention audit entries: %+v; want one counting 3", entries)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the retention job recorded nothing")
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, id := range ids {
			r, err := h.store.Registration(ctx, id)
			if err != nil || !r.Anonymised() || r.Email != registration.ErasedEmail(id) || r.Amount != 14900 {
				t.Errorf("registration %s after retention: %+v, %v", id, r, err)
			}
		}
		if left, err := h.store.RegistrationsToAnonymise(ctx, h.ev.ID, 10); err != nil || len(left) != 0 {
			t.Errorf("left to erase: %v, %v", left, err)
		}
	})
}

// TestRetentionWaits: before the retention period after the event's end is
// over, the job runs and erases nothing.
func TestRetentionWaits(t *testing.T) {
	t.Parallel()
	h := newOfficeHarness(t, "sqlite", officeOptions{retentionDays: 30})
	ctx := t.Context()
	id := h.register(t, "standard", 30)
	h.waitStatus(t, id, registration.StatusCompleted)
	deadline := time.Now().Add(waitFor)
	for {
		res, err := h.pipe.Client().JobList(ctx, river.NewJobListParams().Kinds(pipeline.KindRetention).
			States(rivertype.JobStateCompleted))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Jobs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the retention job did not run at the start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r, _ := h.store.Registration(ctx, id); r.Anonymised() {
		t.Error("erased before the event even took place")
	}
	if entries, _ := h.store.AuditLog(ctx, admin.AuditFilter{Action: admin.ActionRetention, Limit: 10}); len(entries) != 0 {
		t.Errorf("a run that erased nothing was audited: %+v", entries)
	}
}

// TestEraseDeletesMailchimpMember: erasing a subscriber deletes the member
// at Mailchimp for good, in a job that outlasts an outage (retried with
// back-off); the job carries the subscriber hash, never the address.
func TestEraseDeletesMailchimpMember(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		const key, listID = "0123456789abcdef0123456789abcdef-us21", "a1b2c3d4e5"
		fake := providertest.NewMailchimp(t, key, listID)
		list := mailchimp.New(fake.URL(), key, listID, mailchimp.Options{DoubleOptIn: true, BatchWindow: time.Millisecond})
		h := newOfficeHarness(t, engine, officeOptions{list: list})
		ctx := t.Context()
		req := request(4, true)
		id, err := h.svc.Register(ctx, req, "")
		if err != nil {
			t.Fatal(err)
		}
		h.waitStatus(t, id, registration.StatusCompleted)
		if _, ok := fake.Member(req.Attendee.Email); !ok {
			t.Fatal("the attendee is not a member at Mailchimp")
		}
		fake.FailNext(2, 503)
		e, err := h.office.Anonymise(ctx, organiser, id)
		if err != nil || !e.ListMember {
			t.Fatalf("Anonymise = %+v, %v; want the member's deletion queued", e, err)
		}
		deadline := time.Now().Add(waitFor)
		for fake.Deletions() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the member was not deleted at Mailchimp")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, ok := fake.Member(req.Attendee.Email); ok {
			t.Error("the member is still at Mailchimp")
		}
		var job *rivertype.JobRow
		for job == nil {
			res, err := h.pipe.Client().JobList(ctx, river.NewJobListParams().Kinds(pipeline.KindForgetMember).
				States(rivertype.JobStateCompleted))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Jobs) > 0 {
				job = res.Jobs[0]
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the forget_member job did not complete")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if job.Attempt != 3 || !strings.Contains(string(job.EncodedArgs), mailchimp.SubscriberHash(req.Attendee.Email)) ||
			strings.Contains(strings.ToLower(string(job.EncodedArgs)), "example") {
			t.Errorf("forget_member job: attempt %d, args %s; want 3 attempts and only the subscriber hash", job.Attempt, job.EncodedArgs)
		}
	})
}

// TestEraseScrubsJobErrors: the errors River keeps of a registration's
// jobs lose the attendee's address when the registration is erased, as
// a provider's message may quote it.
func TestEraseScrubsJobErrors(t *testing.T) {
	t.Parallel()
	eachEngine(t, func(t *testing.T, engine string) {
		h := newOfficeHarness(t, engine, officeOptions{mailer: func(m *testMailer) {
			// The register job's attempt fails (recorded on the step), then the
			// step's own job fails once (recorded by River) and succeeds.
			quoting := errors.New("451 4.2.0 <ada.5@example.org>: mailbox busy")
			m.errs = []error{quoting, quoting}
		}})
		ctx := t.Context()
		req := request(5, false)
		req.Attendee.Email = "ada.5@example.org"
		id, err := h.svc.Register(ctx, req, "")
		if err != nil {
			t.Fatal(err)
		}
		h.waitStatus(t, id, registration.StatusCompleted)
		quoted := func() int {
			res, err := h.pipe.Client().JobList(ctx, river.NewJobListParams().Kinds(pipeline.KindRegister,
				pipeline.KindSendConfirmation).States(rivertype.JobStateCompleted, rivertype.JobStateRetryable,
				rivertype.JobStateAvailable, rivertype.JobStateRunning, rivertype.JobStateScheduled))
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, j := range res.Jobs {
				for _, e := range j.Errors {
					if strings.Contains(e.Error, "ada.5@example.org") {
						n++
					}
				}
			}
			return n
		}
		before := quoted()
		if before == 0 {
			t.Fatal("no job recorded the provider's error: the test would prove nothing")
		}
		if _, err := h.office.Anonymise(ctx, organiser, id); err != nil {
			t.Fatal(err)
		}
		if n := quoted(); n != 0 {
			t.Errorf("%d job errors still quote the erased address (before: %d)", n, before)
		}
	})
}
