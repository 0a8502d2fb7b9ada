package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"reflect"
	"time"

	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/registration"
	"github.com/registrar/registrar/internal/strictjson"
)

// maxBody caps request bodies: 64 KiB.
const maxBody = 64 << 10

func (s *server) apiCreate() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/json" {
			s.writeError(w, r, &registration.Error{Code: registration.CodeUnsupportedMediaType,
				Message: "Send the registration as JSON with Content-Type: application/json."})
			return
		}
		key := r.Header.Get("Idempotency-Key")
		if _, sent := r.Header["Idempotency-Key"]; sent && !validKey(key) {
			s.writeError(w, r, &registration.Error{Code: registration.CodeInvalidRequest,
				Message: "The Idempotency-Key header must be 1 to 255 printable ASCII characters."})
			return
		}
		req, err := decodeRequest(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if key != "" {
			key = "api:" + key
		}
		id, err := s.register(r.Context(), req, key)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Location", "/api/registrations/"+id)
		writeJSON(w, http.StatusAccepted, map[string]string{
			"id":         id,
			"status":     string(registration.StatusPaid),
			"status_url": s.BaseURL + "/registrations/" + id,
		})
	})
}

func validKey(k string) bool {
	if len(k) < 1 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// decodeRequest reads exactly one JSON object with no unknown, repeated or
// miscased fields, in valid UTF-8.
func decodeRequest(body io.Reader) (registration.Request, error) {
	var req registration.Request
	data, err := io.ReadAll(body)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return req, &registration.Error{Code: registration.CodeRequestTooLarge,
			Message: "The request body is larger than 64 KiB."}
	}
	if err != nil {
		return req, &registration.Error{Code: registration.CodeInvalidRequest, Message: "The request body could not be read.", Err: err}
	}
	// Duplicate keys, keys in another case, unknown keys and invalid UTF-8
	// are refused before encoding/json, which would let them through.
	var shape *strictjson.Error
	if err := strictjson.Check(data, reflect.TypeFor[registration.Request]()); errors.As(err, &shape) {
		return req, &registration.Error{Code: registration.CodeInvalidRequest, Message: shape.Message}
	} else if err != nil {
		return req, &registration.Error{Code: registration.CodeInvalidRequest, Message: "The body is not valid JSON.", Err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var decoded *registration.Request // stays nil for a JSON null, which is no object
	if err := dec.Decode(&decoded); err != nil {
		return req, &registration.Error{Code: registration.CodeInvalidRequest, Message: describeJSONError(err)}
	}
	if decoded == nil {
		return req, &registration.Error{Code: registration.CodeInvalidRequest, Message: "The body must be a JSON object."}
	}
	req = *decoded
	if dec.More() {
		return req, &registration.Error{Code: registration.CodeInvalidRequest, Message: "The body must hold one JSON object and nothing after it."}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return req, &registration.Error{Code: registration.CodeInvalidRequest, Message: "The body must hold one JSON object and nothing after it."}
	}
	return req, nil
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return "The body is not valid JSON."
	case errors.As(err, &typ):
		if typ.Field != "" {
			return "The field " + typ.Field + " must be a " + jsonType(typ.Type.Kind().String()) + "."
		}
		return "The body must be a JSON object."
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "The body is empty or cut short."
	default:
		// json reports unknown fields as `json: unknown field "x"`.
		return "The body does not match the registration format: " + trimJSONPrefix(err.Error()) + "."
	}
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean (true or false)"
	case "struct", "ptr":
		return "JSON object"
	default:
		return kind
	}
}

func trimJSONPrefix(s string) string {
	const p = "json: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

type apiRegistration struct {
	ID         string              `json:"id"`
	Status     registration.Status `json:"status"`
	Ticket     string              `json:"ticket"`
	Amount     string              `json:"amount"`
	Currency   string              `json:"currency"`
	Attendee   apiAttendee         `json:"attendee"`
	Payment    *apiPayment         `json:"payment"`
	Newsletter bool                `json:"newsletter"`
	// Refunded is the sum of successful refunds; omitted when nothing was
	// refunded.
	Refunded  string             `json:"refunded,omitempty"`
	Steps     map[string]apiStep `json:"steps"`
	CreatedAt string             `json:"created_at"`
}

type apiAttendee struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Email     string `json:"email"`
	Company   string `json:"company,omitempty"`
}

type apiPayment struct {
	Provider  string  `json:"provider"`
	Reference string  `json:"reference"`
	Card      apiCard `json:"card"`
}

type apiCard struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

type apiStep struct {
	Status    registration.StepStatus `json:"status"`
	Attempts  int                     `json:"attempts"`
	LastError string                  `json:"last_error,omitempty"`
}

func toAPI(reg registration.Registration) apiRegistration {
	out := apiRegistration{
		ID:         reg.ID,
		Status:     reg.Status,
		Ticket:     reg.TicketID,
		Amount:     event.FormatAmount(reg.Amount, reg.Currency),
		Currency:   reg.Currency,
		Attendee:   apiAttendee{FirstName: reg.FirstName, LastName: reg.LastName, Email: reg.Email, Company: reg.Company},
		Newsletter: reg.Newsletter,
		Steps:      map[string]apiStep{},
		CreatedAt:  reg.CreatedAt.UTC().Format(time.RFC3339),
	}
	if reg.Payment.Provider != "" {
		out.Payment = &apiPayment{Provider: reg.Payment.Provider, Reference: reg.Payment.Reference,
			Card: apiCard{Brand: reg.Payment.Brand, Last4: reg.Payment.Last4}}
	}
	if reg.Refunded > 0 {
		out.Refunded = event.FormatAmount(reg.Refunded, reg.Currency)
	}
	for _, st := range reg.Steps {
		out.Steps[string(st.Name)] = apiStep{Status: st.Status, Attempts: st.Attempts, LastError: publicError(reg, st)}
	}
	return out
}

// publicError is what the attendee is told about a step's last error: a
// short message, never the error itself (paths, hosts, provider text),
// which stays in the back office.
func publicError(reg registration.Registration, st registration.Step) string {
	if st.LastError == "" {
		return ""
	}
	switch {
	case st.Status == registration.StepSucceeded:
		return "This step needed more than one try; it is done."
	case reg.Status == registration.StatusCancelled:
		return "The registration was cancelled before this step was finished."
	case st.Status == registration.StepFailed:
		return "The organisers will finish this step."
	}
	return "We are retrying this step."
}

func (s *server) apiGet() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reg, err := s.Registrar.Registration(r.Context(), r.PathValue("id"))
		if errors.Is(err, registration.ErrNotFound) {
			s.writeError(w, r, &registration.Error{Code: registration.CodeNotFound, Message: "There is no registration with this id."})
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, toAPI(reg))
	})
}
