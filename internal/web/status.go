package web

import (
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// refreshWindow is how long after a registration was made its status page
// reloads itself in a browser without JavaScript; after that, and on a
// finished registration, the attendee refreshes it when they like.
const refreshWindow = time.Minute

type statusView struct {
	page
	Registration registration.Registration
	headWords
	TicketName string
	// When is the event's dates with their time zone.
	When string
	// Payment is what was paid, and how, in words for people.
	Payment string
	// Refund is what was refunded, "" when nothing was.
	Refund string
	Steps  []stepView
	// Live is set while the registration is still being finished: the page
	// offers a refresh link and its script keeps it current.
	Live bool
	// Script is the address of the script that keeps the page current.
	Script string
	// Words are the page's texts for every state, for the script: it shows
	// only what the server wrote.
	Words statusWords
}

// headWords are the heading and first paragraph of a status page, and the
// tone of the box holding them (live, done, attention, cancelled).
type headWords struct {
	Heading string `json:"heading"`
	Lead    string `json:"lead"`
	Tone    string `json:"tone"`
}

type stepView struct {
	Name registration.StepName
	stepWords
}

// stepWords are one step's sentence and its state for the eye: done,
// working, attention, stopped or skipped (not shown).
type stepWords struct {
	Text  string `json:"text"`
	State string `json:"state"`
}

// statusWords are what the status page's script needs: the head for each
// registration status, each step's words for each step status (and
// "stopped", for a step a cancellation ended), which registration statuses
// are final and which step statuses count as finished.
type statusWords struct {
	Statuses map[registration.Status]headWords              `json:"statuses"`
	Steps    map[registration.StepName]map[string]stepWords `json:"steps"`
	Final    []registration.Status                          `json:"final"`
	Done     []registration.StepStatus                      `json:"done"`
	// Updating replaces the refresh link while the script keeps the page
	// current.
	Updating string `json:"updating"`
}

// stepStopped keys the words of a step a cancellation ended.
const stepStopped = "stopped"

func (s *server) statusPage() http.Handler {
	script := staticURL("status.js")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev := s.Registrar.Event()
		reg, err := s.Registrar.Registration(r.Context(), r.PathValue("id"))
		if errors.Is(err, registration.ErrNotFound) {
			s.render(w, r, http.StatusNotFound, "notfound.html", page{Event: ev, Title: "Registration not found"})
			return
		}
		if err != nil {
			s.errorPage(w, r, s.asError(r, err))
			return
		}
		live := !reg.Status.Terminal()
		v := statusView{
			page:         page{Event: ev, Title: "Your registration", Refresh: live && time.Since(reg.CreatedAt) < refreshWindow},
			Registration: reg,
			headWords:    headFor(reg.Status, reg, ev),
			TicketName:   reg.TicketID,
			When:         eventDates(ev),
			Payment:      paymentWords(reg),
			Live:         live,
			Script:       script,
		}
		if t, ok := ev.Ticket(reg.TicketID); ok {
			v.TicketName = t.Name
		}
		if reg.Refunded > 0 {
			v.Refund = price(reg.Refunded, reg.Currency) + " refunded"
			if c := cardWords(reg.Payment); c != "" {
				v.Refund += " to " + c
			}
		}
		for _, st := range reg.Steps {
			if words := stepWordsFor(st.Name, st.Status, reg.Status); words.State != "skipped" {
				v.Steps = append(v.Steps, stepView{Name: st.Name, stepWords: words})
			}
		}
		if live {
			v.Words = wordsFor(reg, ev)
		}
		s.render(w, r, http.StatusOK, "status.html", v)
	})
}

// wordsFor gathers the words of every state reg may reach.
func wordsFor(reg registration.Registration, ev *event.Event) statusWords {
	statuses := []registration.Status{
		registration.StatusPaid, registration.StatusProcessing, registration.StatusCompleted,
		registration.StatusNeedsAttention, registration.StatusCancelled,
	}
	stepStatuses := []registration.StepStatus{
		registration.StepPending, registration.StepRunning, registration.StepRetrying,
		registration.StepSucceeded, registration.StepFailed, registration.StepSkipped,
	}
	out := statusWords{Statuses: map[registration.Status]headWords{}, Steps: map[registration.StepName]map[string]stepWords{},
		Updating: "This page updates by itself."}
	for _, st := range statuses {
		out.Statuses[st] = headFor(st, reg, ev)
		if st.Terminal() {
			out.Final = append(out.Final, st)
		}
	}
	for _, st := range stepStatuses {
		if st.Done() {
			out.Done = append(out.Done, st)
		}
	}
	for _, step := range reg.Steps {
		words := map[string]stepWords{}
		for _, st := range stepStatuses {
			words[string(st)] = stepWordsFor(step.Name, st, reg.Status)
		}
		words[stepStopped] = stepWordsFor(step.Name, registration.StepPending, registration.StatusCancelled)
		out.Steps[step.Name] = words
	}
	return out
}

// headFor is what the status page says first about reg once its status is
// st.
func headFor(st registration.Status, reg registration.Registration, ev *event.Event) headWords {
	to := maskEmail(reg.Email)
	switch st {
	case registration.StatusCompleted:
		return headWords{Heading: "You're registered", Tone: "done",
			Lead: "Your confirmation was sent to " + to + ". See you at " + ev.Name + "!"}
	case registration.StatusNeedsAttention:
		return headWords{Heading: "You're in — one step needs our attention", Tone: "attention",
			Lead: "Your seat is yours. One step could not be finished automatically: the organisers have been told and will finish it. There is no need to do anything."}
	case registration.StatusCancelled:
		return headWords{Heading: "Your registration was cancelled", Tone: "cancelled",
			Lead: "The organisers cancelled this registration, so the ticket is no longer valid. If you think this is a mistake, contact them."}
	default:
		return headWords{Heading: "You're in", Tone: "live",
			Lead: "Your confirmation is on its way to " + to + "."}
	}
}

// stepWordsFor is how a step in status st is described to the attendee
// while the registration is in status reg.
func stepWordsFor(name registration.StepName, st registration.StepStatus, reg registration.Status) stepWords {
	if st == registration.StepSkipped {
		return stepWords{State: "skipped"}
	}
	type texts struct{ working, retrying, done, attention, stopped string }
	var t texts
	switch name {
	case registration.StepSaveOrder:
		t = texts{"Saving your booking", "We're still saving your booking — no need to do anything",
			"Booking saved", "Saving your booking: the organisers will finish this",
			"Booking not saved: the registration was cancelled"}
	case registration.StepSendConfirmation:
		t = texts{"Sending your confirmation email", "We're still sending your confirmation email — no need to do anything",
			"Confirmation email sent", "Your confirmation email: the organisers will finish this",
			"Confirmation email not sent: the registration was cancelled"}
	case registration.StepAddToMailingList:
		t = texts{"Signing you up for the newsletter", "We're still signing you up for the newsletter — no need to do anything",
			"Newsletter sign-up received", "Your newsletter sign-up: the organisers will finish this",
			"Newsletter sign-up stopped: the registration was cancelled"}
	default:
		t = texts{"In progress", "Still in progress — no need to do anything", "Done",
			"The organisers will finish this", "Stopped: the registration was cancelled"}
	}
	switch {
	case st.Done():
		return stepWords{Text: t.done, State: "done"}
	case reg == registration.StatusCancelled:
		return stepWords{Text: t.stopped, State: "stopped"}
	case st == registration.StepFailed:
		return stepWords{Text: t.attention, State: "attention"}
	case st == registration.StepRetrying:
		return stepWords{Text: t.retrying, State: "working"}
	default:
		return stepWords{Text: t.working, State: "working"}
	}
}

// paymentWords says what reg cost and how it was paid; a free ticket is
// never called paid.
func paymentWords(reg registration.Registration) string {
	if reg.Amount == 0 {
		return "Registered — free ticket"
	}
	out := price(reg.Amount, reg.Currency) + " paid"
	if c := cardWords(reg.Payment); c != "" {
		out += " with " + c
	}
	return out
}

// cardWords names the card of a charge as people know it: "Visa •••• 1111".
func cardWords(c payment.Charge) string {
	if c.Last4 == "" {
		return ""
	}
	name := payment.BrandName(c.Brand)
	if name == "" {
		name = "Card"
	}
	return name + " •••• " + c.Last4
}

// maskEmail hides an email address but for what lets its owner recognise
// it: "ada@example.org" is "a•••@example.org".
func maskEmail(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return "•••"
	}
	first, _ := utf8.DecodeRuneInString(email)
	return string(first) + "•••" + email[at:]
}
