package logredact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/payment"
)

const (
	visa       = "4111111111111111"
	mastercard = "5555555555554444"
	amex       = "378282246310005"
	secret     = "EKyT-paypal-secret-9Qz"
	apiKey     = "SG.key-1234567890abcdef"
	// A secret holding a card-shaped number is removed whole.
	digitSecret = "tok-" + visa + "-tok"
)

// The marks as the text handler quotes them.
var qCard, qSecret = strconv.Quote(CardMark), strconv.Quote(SecretMark)

var t0 = time.Date(2026, 12, 3, 14, 0, 0, 0, time.UTC)

// logged returns what a text handler behind New writes for the record made
// by log.
func logged(t *testing.T, log func(l *slog.Logger)) string {
	t.Helper()
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), []string{secret, apiKey, digitSecret, "short", ""})
	log(slog.New(h))
	return buf.String()
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

type valuer struct{ s string }

func (v valuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("inner", v.s), slog.Any("deeper", stringer{v.s}))
}

type textual struct{ s string }

func (x textual) MarshalText() ([]byte, error) { return []byte(x.s), nil }

type payload struct {
	Card string
	N    int
}

func TestRedacts(t *testing.T) {
	t.Parallel()
	paypalError := `paypal answered 422 UNPROCESSABLE_ENTITY INVALID_PARAMETER_VALUE: {"field":"/payment_source/card/number","value":"` +
		visa + `","location":"body","issue":"INVALID_PARAMETER_VALUE"}`
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		gone []string // must not appear
		want []string // must appear
	}{
		{"visa in the message", func(l *slog.Logger) { l.Info("card " + visa + " declined") },
			[]string{visa}, []string{"card " + CardMark + " declined"}},
		{"visa with spaces", func(l *slog.Logger) { l.Info("x", "card", "4111 1111 1111 1111") },
			[]string{"4111 1111"}, []string{`card="` + CardMark + `"`}},
		{"mastercard with dashes", func(l *slog.Logger) { l.Info("x", "card", "5555-5555-5555-4444") },
			[]string{"5555-5555"}, []string{"card=" + qCard}},
		{"amex 4-6-5", func(l *slog.Logger) { l.Info("x", "card", "3782 822463 10005") },
			[]string{"822463"}, []string{CardMark}},
		{"amex digits only", func(l *slog.Logger) { l.Info("x", "card", amex) },
			[]string{amex}, []string{CardMark}},
		{"card after another number", func(l *slog.Logger) { l.Info("order 12345 4111 1111 1111 1111 failed") },
			[]string{"4111 1111"}, []string{"order 12345 " + CardMark + " failed"}},
		{"card glued to letters", func(l *slog.Logger) { l.Info("x", "v", "num"+mastercard+"end") },
			[]string{mastercard}, []string{"num" + CardMark + "end"}},
		{"two cards", func(l *slog.Logger) { l.Info(visa + "," + mastercard) },
			[]string{visa, mastercard}, []string{CardMark + "," + CardMark}},
		{"paypal JSON error text", func(l *slog.Logger) { l.Error("charge failed", "err", errors.New(paypalError)) },
			[]string{visa}, []string{`\"value\":\"` + CardMark + `\"`}},
		{"wrapped error", func(l *slog.Logger) { l.Error("x", "err", fmt.Errorf("charge: %w", errors.New("card "+visa))) },
			[]string{visa}, []string{"charge: card " + CardMark}},
		{"stringer", func(l *slog.Logger) { l.Info("x", "s", stringer{"n=" + visa}) },
			[]string{visa}, []string{`s="n=` + CardMark + `"`}},
		{"text marshaler", func(l *slog.Logger) { l.Info("x", "t", textual{visa}) },
			[]string{visa}, []string{"t=" + qCard}},
		{"log valuer", func(l *slog.Logger) { l.Info("x", "v", valuer{visa}) },
			[]string{visa}, []string{"v.inner=" + qCard, "v.deeper=" + qCard}},
		{"struct", func(l *slog.Logger) { l.Info("x", "p", payload{Card: visa, N: 3}) },
			[]string{visa}, []string{CardMark}},
		{"slice of any", func(l *slog.Logger) { l.Info("x", "list", []any{1, visa, "b"}) },
			[]string{visa}, []string{CardMark}},
		{"map", func(l *slog.Logger) { l.Info("x", "m", map[string]any{"card": mastercard}) },
			[]string{mastercard}, []string{CardMark}},
		{"bytes", func(l *slog.Logger) { l.Info("x", "b", []byte(visa)) },
			[]string{visa}, []string{CardMark}},
		{"integer", func(l *slog.Logger) { l.Info("x", "n", int64(4111111111111111)) },
			[]string{visa}, []string{"n=" + qCard}},
		{"unsigned integer", func(l *slog.Logger) { l.Info("x", "n", uint64(5555555555554444)) },
			[]string{mastercard}, []string{"n=" + qCard}},
		{"nested groups", func(l *slog.Logger) {
			l.Info("x", slog.Group("a", slog.Group("b", slog.String("card", visa), slog.String("key", secret))))
		}, []string{visa, secret}, []string{"a.b.card=" + qCard, "a.b.key=" + qSecret}},
		{"with attrs", func(l *slog.Logger) { l.With("card", visa, "key", apiKey).Info("x") },
			[]string{visa, apiKey}, []string{"card=" + qCard, "key=" + qSecret}},
		{"with group", func(l *slog.Logger) { l.WithGroup("g"+visa).Info("x", "k", "v") },
			[]string{visa}, []string{`"g` + CardMark + `.k"=v`}},
		{"key", func(l *slog.Logger) { l.Info("x", visa, "v") },
			[]string{visa}, []string{qCard + "=v"}},
		{"secret in an error", func(l *slog.Logger) {
			l.Error("x", "err", fmt.Errorf("token request: basic %s refused", secret))
		}, []string{secret}, []string{"basic " + SecretMark + " refused"}},
		{"secret in the message", func(l *slog.Logger) { l.Warn("key " + apiKey + " rejected") },
			[]string{apiKey}, []string{SecretMark}},
		{"secret holding digits is removed whole", func(l *slog.Logger) {
			l.Info("x", "v", "a "+digitSecret+" b")
		}, []string{visa, CardMark, "tok"}, []string{`v="a ` + SecretMark + ` b"`}},
		// What stays.
		{"non-Luhn 16 digits kept", func(l *slog.Logger) { l.Info("x", "id", "4111111111111112") },
			nil, []string{"id=4111111111111112"}},
		{"non-Luhn with spaces kept", func(l *slog.Logger) { l.Info("x", "id", "1234 5678 9012 3456") },
			nil, []string{`id="1234 5678 9012 3456"`}},
		{"20 digits kept", func(l *slog.Logger) { l.Info("x", "id", "41111111111111110000") },
			nil, []string{"id=41111111111111110000"}},
		{"12 Luhn digits kept", func(l *slog.Logger) { l.Info("x", "id", "411111111116") },
			nil, []string{"id=411111111116"}},
		{"timestamp kept", func(l *slog.Logger) { l.Info("x", "at", "2026-12-03T14:37:56.123456789Z") },
			nil, []string{"at=2026-12-03T14:37:56.123456789Z"}},
		{"nanoseconds kept", func(l *slog.Logger) { l.Info("x", "ns", int64(1764772678123456789)) },
			nil, []string{"ns=1764772678123456789"}},
		{"amount kept", func(l *slog.Logger) { l.Info("x", "amount", 12500, "currency", "EUR") },
			nil, []string{"amount=12500"}},
		{"control character beside digits", func(l *slog.Logger) { l.Info("\x01" + "41111111111111") },
			[]string{"0141111111111111"}, []string{"\ufffd41111111111111"}},
		{"short secret ignored", func(l *slog.Logger) { l.Info("a short word") },
			nil, []string{"a short word"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := logged(t, tc.log)
			for _, g := range tc.gone {
				if strings.Contains(out, g) {
					t.Errorf("output %q contains %q", out, g)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q does not contain %q", out, w)
				}
			}
		})
	}
}

func TestRecordUntouched(t *testing.T) {
	t.Parallel()
	var got slog.Record
	h := New(recorder{&got}, []string{secret})
	r := slog.NewRecord(t0, slog.LevelInfo, "registration paid", 0)
	r.AddAttrs(slog.String("registration", "r_123"), slog.Int("amount", 12500))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if got.Message != r.Message || got.NumAttrs() != 2 || !got.Time.Equal(t0) {
		t.Errorf("record passed on as %+v; want it as it was", got)
	}
}

type recorder struct{ r *slog.Record }

func (recorder) Enabled(context.Context, slog.Level) bool        { return true }
func (h recorder) Handle(_ context.Context, r slog.Record) error { *h.r = r.Clone(); return nil }
func (h recorder) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h recorder) WithGroup(string) slog.Handler                 { return h }

// candidates are stretches of digit groups joined by single spaces or
// dashes, as the handler reads them.
var candidates = regexp.MustCompile(`[0-9]+(?:[ -][0-9]+)*`)

// leaksCard reports a card number in s, found the slow way.
func leaksCard(s string) (string, bool) {
	for _, c := range candidates.FindAllString(s, -1) {
		groups := regexp.MustCompile(`[ -]`).Split(c, -1)
		for a := range groups {
			digits := ""
			for z := a; z < len(groups); z++ {
				digits += groups[z]
				if len(digits) >= 13 && len(digits) <= 19 && payment.Luhn(digits) {
					return digits, true
				}
			}
		}
	}
	return "", false
}

func FuzzNoCardSurvives(f *testing.F) {
	for _, s := range []string{visa, "4111 1111 1111 1111", "5555-5555-5555-4444", "3782 822463 10005",
		"order 12345 4111 1111 1111 1111", "41111111111111110000", "2026-12-03T14:37:56Z", "1 2 3 4 5 6 7 8 9 0 1 2 3 4",
		`{"value":"4111111111111111"}`, "4111--1111-1111-1111", "4111 1111 1111 1111 1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var buf bytes.Buffer
		l := slog.New(New(slog.NewTextHandler(&buf, nil), nil))
		l.Info(s, "v", s, slog.Group("g", slog.Any("err", errors.New(s))))
		if card, ok := leaksCard(buf.String()); ok {
			t.Fatalf("output %q keeps card number %s", buf.String(), card)
		}
		// Strings without a card number come out as they went in.
		if _, ok := leaksCard(s); !ok {
			if out, _ := cards(s); out != s {
				t.Fatalf("cards(%q) = %q; want it unchanged", s, out)
			}
		}
	})
}

// benchRecord logs a typical record: a message, an id, a ticket, an
// amount, an email address and an error.
func benchRecord(b *testing.B, h slog.Handler, err error) {
	l := slog.New(h)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		l.LogAttrs(ctx, slog.LevelInfo, "registration paid",
			slog.String("registration", "r_01JEXAMPLE7Q2M4"), slog.String("ticket", "standard"),
			slog.Int64("amount", 12500), slog.String("email", "ada.lovelace@example.org"),
			slog.Time("at", t0), slog.Any("err", err))
	}
}

func BenchmarkHandler(b *testing.B) {
	secrets := []string{secret, apiKey, "smtp-password-123", "admin-password-456"}
	plain := errors.New(`paypal answered 503 SERVICE_UNAVAILABLE (debug_id f3c1a0b2e4d5)`)
	withCard := errors.New(`paypal answered 422 INVALID_PARAMETER_VALUE: {"value":"4111 1111 1111 1111"}`)
	b.Run("text handler alone", func(b *testing.B) {
		benchRecord(b, slog.NewTextHandler(io.Discard, nil), plain)
	})
	b.Run("nothing to redact", func(b *testing.B) {
		benchRecord(b, New(slog.NewTextHandler(io.Discard, nil), secrets), plain)
	})
	b.Run("card redacted", func(b *testing.B) {
		benchRecord(b, New(slog.NewTextHandler(io.Discard, nil), secrets), withCard)
	})
}
