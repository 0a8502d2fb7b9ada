package web

import (
	"net/http"

	"github.com/registrar/registrar/internal/registration"
)

// errorView is a page saying what went wrong and what to do about it.
type errorView struct {
	page
	Heading, Message string
}

// errorPage answers a page request that failed with the site's page for e.
func (s *server) errorPage(w http.ResponseWriter, r *http.Request, e *registration.Error) {
	s.render(w, r, status(e.Code), "error.html", errorView{
		page:    page{Event: s.Registrar.Event(), Title: "Something went wrong"},
		Heading: "Something went wrong", Message: e.Message,
	})
}

// routeErrors answers what the route table has no route for (an unknown
// path, or a method its path does not take) with the site's pages for 404
// and 405 instead of ServeMux's plain text, keeping ServeMux's status and
// Allow header. The API and the back office answer for themselves: their
// catch-all routes match every path under them.
func (s *server) routeErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" || r.RequestURI == "*" {
			mux.ServeHTTP(w, r)
			return
		}
		// No route: h is ServeMux's answer (404, 405 with Allow, or a
		// redirect to the cleaned path, which passes through).
		h.ServeHTTP(&routeErrorWriter{ResponseWriter: w, page: func(code int) { s.routeErrorPage(w, r, code) }}, r)
	})
}

func (s *server) routeErrorPage(w http.ResponseWriter, r *http.Request, code int) {
	v := errorView{page: page{Event: s.Registrar.Event()}}
	if code == http.StatusMethodNotAllowed {
		v.Title, v.Heading = "Not available this way", "This page can't be used that way"
		v.Message = "Your browser sent a " + r.Method + " request to an address that takes " + w.Header().Get("Allow") +
			" only. Open the address as a link, or start again from the registration form."
	} else {
		v.Title, v.Heading = "Page not found", "Page not found"
		v.Message = "There is no page at this address. Check the link for typos, or start from the registration form."
	}
	s.render(w, r, code, "error.html", v)
}

// routeErrorWriter replaces ServeMux's plain-text 404 and 405 with a page;
// any other answer passes through.
type routeErrorWriter struct {
	http.ResponseWriter
	page   func(code int)
	styled bool
}

func (w *routeErrorWriter) WriteHeader(code int) {
	if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
		w.styled = true
		w.page(code)
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *routeErrorWriter) Write(b []byte) (int, error) {
	if w.styled {
		return len(b), nil // ServeMux's plain text, replaced by the page
	}
	return w.ResponseWriter.Write(b)
}
