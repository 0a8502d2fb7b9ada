package metrics

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/registrar/registrar/internal/registration"
)

// OperatorStats are the figures an organiser alerts on, read from the
// database: seats, registrations, the job queue, payment incidents and
// refunds.
type OperatorStats struct {
	// Tickets are the event's tickets, sorted by id.
	Tickets []TicketSeats
	// Registrations counts the event's registrations by status.
	Registrations map[string]int64
	// Jobs counts River's jobs of every event in the database by queue and
	// state (available, running, retryable, discarded, scheduled); a pair
	// without jobs may be absent.
	Jobs map[JobKey]int64
	// OldestAvailable is, per queue, how long the oldest job ready to run
	// has waited since it was scheduled; a queue without one may be absent.
	OldestAvailable map[string]time.Duration
	// Incidents counts the payment incidents by kind.
	Incidents map[string]int64
	// Refunds counts the event's refunds by state.
	Refunds map[string]int64
}

// TicketSeats are one ticket's seats.
type TicketSeats struct {
	Ticket   string
	Capacity int64
	Sold     int64 // paid registrations not cancelled
	Held     int64 // held by payments in progress
	Left     int64 // on sale now: capacity less sold and held, never below 0
}

// JobKey names a queue and a job state.
type JobKey struct{ Queue, State string }

// jobStates are the states of River's jobs that are counted: waiting to
// run, running, waiting to be retried, given up on, and scheduled for
// later. Finished jobs (completed, cancelled) are not.
func jobStates() []string {
	return []string{"available", "running", "retryable", "discarded", "scheduled"}
}

// registrationStatuses, incidentKinds and refundOutcomes are every value
// their metric is reported for, 0 included: an alert on needs_attention
// needs a series before the first one.
func registrationStatuses() []string {
	return []string{
		string(registration.StatusPaid), string(registration.StatusProcessing), string(registration.StatusCompleted),
		string(registration.StatusNeedsAttention), string(registration.StatusCancelled),
	}
}

func incidentKinds() []string {
	return []string{
		string(registration.IncidentRefunded), string(registration.IncidentRefundFailed),
		string(registration.IncidentResolvedCharged), string(registration.IncidentResolvedNotCharged),
		string(registration.IncidentUnresolved),
	}
}

func refundOutcomes() []string {
	return []string{
		string(registration.RefundRequested), string(registration.RefundPending),
		string(registration.RefundSucceeded), string(registration.RefundFailed),
	}
}

// StatsSource reads the operator figures of an event: the store.
type StatsSource interface {
	OperatorStats(ctx context.Context, eventID string) (OperatorStats, error)
}

// Operator configures the metrics read from the database.
type Operator struct {
	Source  StatsSource
	EventID string
	// Queues are the job queues reported even when empty; any other queue
	// with jobs is reported too.
	Queues []string
	// CacheFor is how long one reading answers scrapes, so that scrapes
	// cannot load the database; 5 s when 0.
	CacheFor time.Duration
	// Timeout bounds one reading; 3 s when 0.
	Timeout time.Duration
	// Now is the clock of the cache; time.Now when nil.
	Now func() time.Time
	Log *slog.Logger
}

// AddOperator adds the metrics read from the database, at scrape time, to
// m.
func (m *Metrics) AddOperator(o Operator) {
	if o.CacheFor <= 0 {
		o.CacheFor = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	m.registry.MustRegister(newOperatorCollector(o))
}

// operatorCollector reads the stats when scraped, at most once per
// CacheFor: concurrent scrapes wait for the one reading.
type operatorCollector struct {
	o Operator

	up, sold, held, left, capacity, registrations, jobs, oldest, incidents, refunds *prometheus.Desc

	mu    sync.Mutex
	read  time.Time // when stats and err were read; zero before the first reading
	stats OperatorStats
	err   error
}

func newOperatorCollector(o Operator) *operatorCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &operatorCollector{
		o:             o,
		up:            desc("registrar_stats_up", "1 when the figures read from the database at this scrape (or the last few seconds) are current, 0 when reading them failed."),
		sold:          desc("registrar_seats_sold", "Seats sold (paid registrations not cancelled), by ticket.", "ticket"),
		held:          desc("registrar_seats_held", "Seats held by payments in progress, by ticket.", "ticket"),
		left:          desc("registrar_seats_left", "Seats on sale now, by ticket.", "ticket"),
		capacity:      desc("registrar_seats_capacity", "Seats of the ticket, from the event file.", "ticket"),
		registrations: desc("registrar_registrations", "Registrations by status.", "status"),
		jobs:          desc("registrar_jobs", "Pipeline jobs by queue and state.", "queue", "state"),
		oldest:        desc("registrar_job_oldest_available_seconds", "How long the oldest job ready to run has waited, by queue; 0 when none waits.", "queue"),
		incidents:     desc("registrar_payment_incidents", "Payment incidents by kind.", "kind"),
		refunds:       desc("registrar_refunds", "Refunds by outcome.", "outcome"),
	}
}

// Describe implements prometheus.Collector.
func (c *operatorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.sold, c.held, c.left, c.capacity, c.registrations, c.jobs, c.oldest, c.incidents, c.refunds} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. When the database cannot be
// read, only registrar_stats_up (0) is reported: no figure is better than
// a stale one.
func (c *operatorCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.current()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if err != nil {
		gauge(c.up, 0)
		return
	}
	gauge(c.up, 1)
	for _, t := range st.Tickets {
		gauge(c.sold, float64(t.Sold), t.Ticket)
		gauge(c.held, float64(t.Held), t.Ticket)
		gauge(c.left, float64(t.Left), t.Ticket)
		gauge(c.capacity, float64(t.Capacity), t.Ticket)
	}
	for _, status := range withKeys(registrationStatuses(), st.Registrations) {
		gauge(c.registrations, float64(st.Registrations[status]), status)
	}
	queues := slices.Clone(c.o.Queues)
	for k := range st.Jobs {
		queues = append(queues, k.Queue)
	}
	for q := range st.OldestAvailable {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	queues = slices.Compact(queues)
	for _, q := range queues {
		for _, state := range jobStates() {
			gauge(c.jobs, float64(st.Jobs[JobKey{Queue: q, State: state}]), q, state)
		}
		gauge(c.oldest, max(st.OldestAvailable[q], 0).Seconds(), q)
	}
	for _, kind := range withKeys(incidentKinds(), st.Incidents) {
		gauge(c.incidents, float64(st.Incidents[kind]), kind)
	}
	for _, outcome := range withKeys(refundOutcomes(), st.Refunds) {
		gauge(c.refunds, float64(st.Refunds[outcome]), outcome)
	}
}

// current returns the cached reading, or reads again once it is older
// than CacheFor. A failed reading is cached too: a database in trouble is
// not asked again at every scrape.
func (c *operatorCollector) current() (OperatorStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.o.Now()
	if !c.read.IsZero() && now.Sub(c.read) < c.o.CacheFor && now.Sub(c.read) >= 0 {
		return c.stats, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
	defer cancel()
	c.stats, c.err = c.o.Source.OperatorStats(ctx, c.o.EventID)
	c.read = now
	if c.err != nil {
		c.o.Log.Warn("reading the operator metrics from the database failed; registrar_stats_up is 0", "err", c.err)
	}
	return c.stats, c.err
}

// withKeys returns known followed by the other keys of m, sorted: every
// known value is reported, and an unexpected one is not hidden.
func withKeys(known []string, m map[string]int64) []string {
	out := slices.Clone(known)
	var extra []string
	for k := range m {
		if !slices.Contains(known, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}
