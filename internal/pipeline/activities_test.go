package pipeline

import (
	"slices"
	"testing"

	"github.com/riverqueue/river"

	"github.com/registrar/registrar/internal/registration"
)

// TestActivityTable: every step a registration is created with has exactly
// one activity, with a job kind named after it, and no activity names a
// step that registrations do not have.
func TestActivityTable(t *testing.T) {
	acts := activityTable()
	var steps []registration.StepName
	for _, a := range acts {
		if slices.Contains(steps, a.step) {
			t.Errorf("step %s has two activities", a.step)
		}
		steps = append(steps, a.step)
		if kind := a.args("r").Kind(); kind != string(a.step) {
			t.Errorf("activity %s: job kind %q; want the step's name", a.step, kind)
		}
		if a.run == nil || a.addWorker == nil || a.queue == "" {
			t.Errorf("activity %s is incomplete: %+v", a.step, a)
		}
		if job := a.job("r", true); job.InsertOpts.Queue != a.queue || !job.InsertOpts.UniqueOpts.ByArgs {
			t.Errorf("activity %s: job options %+v; want queue %q, unique by args", a.step, job.InsertOpts, a.queue)
		}
	}
	if !slices.Equal(steps, registration.Steps[:]) {
		t.Errorf("activities %v; want one per registration step, in order: %v", steps, registration.Steps)
	}
	if err := func() error {
		ws := river.NewWorkers()
		for _, a := range acts {
			if err := a.addWorker(ws, Deps{}, a); err != nil {
				return err
			}
		}
		return nil
	}(); err != nil {
		t.Errorf("registering the activities' workers: %v", err)
	}
}
