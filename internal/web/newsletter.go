package web

import (
	"context"
	"errors"
	"net/http"

	"github.com/registrar/registrar/internal/email"
	"github.com/registrar/registrar/internal/registration"
)

// Newsletter confirms addresses on the local mailing list (double opt-in):
// an attendee who ticked the newsletter box is emailed a link
// /newsletter/confirm/{token}; its page asks them to confirm, and only the
// POST of that page subscribes them. A GET never changes anything, since
// mail scanners follow links.
type Newsletter interface {
	// PendingSubscription returns the subscriber awaiting confirmation
	// under the link with tokenHash; registration.ErrNotFound for none.
	PendingSubscription(ctx context.Context, tokenHash string) (registration.Subscriber, error)
	// ConfirmSubscription subscribes them and makes the link stop working;
	// registration.ErrNotFound when no pending link has tokenHash.
	ConfirmSubscription(ctx context.Context, tokenHash string) (registration.Subscriber, error)
}

// newsletterView is the confirmation page in one of its states: "ask"
// (with the form), "done", or "expired".
type newsletterView struct {
	page
	State string
	Email string // the address being confirmed, partly hidden
	Token string
}

func (s *server) newsletterView(state string) newsletterView {
	v := newsletterView{page: page{Event: s.Registrar.Event()}, State: state}
	switch state {
	case "ask":
		v.Title = "Confirm your subscription"
	case "done":
		v.Title = "You're subscribed"
	default:
		v.Title = "Link expired"
	}
	return v
}

// newsletterExpired answers a link that is not, or no longer, a pending
// confirmation's.
func (s *server) newsletterExpired(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusNotFound, "newsletter.html", s.newsletterView("expired"))
}

// newsletterPage asks to confirm; it changes nothing.
func (s *server) newsletterPage() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.PathValue("token")
		hash, ok := email.ConfirmTokenHash(token)
		if !ok {
			s.newsletterExpired(w, r)
			return
		}
		sub, err := s.Newsletter.PendingSubscription(r.Context(), hash)
		if errors.Is(err, registration.ErrNotFound) {
			s.newsletterExpired(w, r)
			return
		}
		if err != nil {
			s.errorPage(w, r, s.asError(r, err))
			return
		}
		v := s.newsletterView("ask")
		v.Email, v.Token = maskEmail(sub.Email), token
		s.render(w, r, http.StatusOK, "newsletter.html", v)
	})
}

// newsletterConfirm subscribes the link's address, then sends the browser
// to the page saying so (POST-redirect-GET: reloading it confirms nothing
// twice). Cross-origin posts are refused by the handler's origin check.
func (s *server) newsletterConfirm() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hash, ok := email.ConfirmTokenHash(r.PathValue("token"))
		if !ok {
			s.newsletterExpired(w, r)
			return
		}
		sub, err := s.Newsletter.ConfirmSubscription(r.Context(), hash)
		if errors.Is(err, registration.ErrNotFound) {
			s.newsletterExpired(w, r)
			return
		}
		if err != nil {
			s.errorPage(w, r, s.asError(r, err))
			return
		}
		s.Log.InfoContext(r.Context(), "newsletter subscription confirmed", "registration", sub.RegistrationID)
		http.Redirect(w, r, "/newsletter/confirmed", http.StatusSeeOther)
	})
}

// newsletterConfirmed is where a confirmation ends.
func (s *server) newsletterConfirmed() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusOK, "newsletter.html", s.newsletterView("done"))
	})
}
