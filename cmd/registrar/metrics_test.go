package main

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var metricsLine = regexp.MustCompile(`msg="serving metrics" addr=(http://\S+/metrics)`)

// metricsURL is where the registrar whose log is logs serves its metrics,
// as its start-up log says.
func metricsURL(t *testing.T, logs interface{ String() string }) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := metricsLine.FindAllStringSubmatch(logs.String(), -1); m != nil {
			return m[len(m)-1][1] // the latest start's
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metrics address in the log:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrapeMetrics GETs url with the bearer token (none when ""); it returns
// the status code and the body.
func scrapeMetrics(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricValue returns the value of the sample named series (name and
// labels exactly as exposed) in text, and whether there is one.
func metricValue(text, series string) (float64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// waitMetrics scrapes url until every series in want has its value (the
// figures read from the database are cached for a few seconds), and
// returns the last scrape.
func waitMetrics(t *testing.T, url, token string, want map[string]float64) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, text := scrapeMetrics(t, url, token)
		var wrong []string
		for series, v := range want {
			if got, ok := metricValue(text, series); !ok || got != v {
				wrong = append(wrong, fmt.Sprintf("%s = %v (present %v), want %v", series, got, ok, v))
			}
		}
		if code == http.StatusOK && len(wrong) == 0 {
			return text
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics after 60 s (status %d):\n  %s\nscrape:\n%s", code, strings.Join(wrong, "\n  "), text)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestOperatorMetrics follows an event's figures on the metrics listener
// through real registrations, on both engines: first a web-only process
// (nothing runs the pipeline, so jobs wait), then the whole system.
func TestOperatorMetrics(t *testing.T) {
	t.Parallel()
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e, f := providerEnv(t, dir, "sendgrid")
			e["REGISTRAR_EVENT_FILE"] = eventFile(t, dir, 5, 2)
			useEngine(t, e, engine, dir)
			e["REGISTRAR_ROLES"] = "web"
			s := startRun(t, e)
			murl := metricsURL(t, s.logs)
			if !strings.HasPrefix(murl, "http://127.0.0.1:") {
				t.Fatalf("metrics served at %s, want a loopback address", murl)
			}

			// Three standard seats and both limited ones sold; a declined
			// card sells nothing; a payment whose outcome PayPal cannot tell
			// keeps its seat held.
			for i, ticket := range []string{"standard", "standard", "standard", "limited", "limited"} {
				if code, _, err := post(http.DefaultClient, s.url, ticketBody(i, ticket, false), ""); err != nil || code != http.StatusAccepted {
					t.Fatalf("registration %d: %d %v", i, code, err)
				}
			}
			if code, _, err := post(http.DefaultClient, s.url, paypalBody(10, false, "CCREJECT-REFUSED"), ""); err != nil || code != http.StatusPaymentRequired {
				t.Fatalf("declined card: %d %v", code, err)
			}
			f.paypal.FailNext(1000, http.StatusInternalServerError)
			if code, _, err := post(http.DefaultClient, s.url, paypalBody(11, false, "Ada Lovelace"), "k-unknown"); err != nil || code != http.StatusBadGateway {
				t.Fatalf("PayPal failing: %d %v, want 502", code, err)
			}
			f.paypal.FailNext(0, 0)

			// The public listener serves no metrics.
			if code, _ := scrapeMetrics(t, s.url+"/metrics", ""); code != http.StatusNotFound {
				t.Errorf("public GET /metrics = %d, want 404", code)
			}
			text := waitMetrics(t, murl, "", map[string]float64{
				"registrar_stats_up":                                                1,
				`registrar_seats_sold{ticket="standard"}`:                           3,
				`registrar_seats_held{ticket="standard"}`:                           1,
				`registrar_seats_left{ticket="standard"}`:                           1,
				`registrar_seats_capacity{ticket="standard"}`:                       5,
				`registrar_seats_sold{ticket="limited"}`:                            2,
				`registrar_seats_held{ticket="limited"}`:                            0,
				`registrar_seats_left{ticket="limited"}`:                            0,
				`registrar_registrations{status="paid"}`:                            5,
				`registrar_registrations{status="completed"}`:                       0,
				`registrar_registrations{status="needs_attention"}`:                 0,
				`registrar_registrations{status="cancelled"}`:                       0,
				`registrar_jobs{queue="default",state="available"}`:                 5,
				`registrar_jobs{queue="default",state="running"}`:                   0,
				`registrar_jobs{queue="mailing_list",state="available"}`:            0,
				`registrar_jobs{queue="payments",state="discarded"}`:                0,
				`registrar_payment_incidents{kind="unresolved"}`:                    0,
				`registrar_refunds{outcome="succeeded"}`:                            0,
				`registrar_registration_attempts_total{outcome="accepted"}`:         5,
				`registrar_registration_attempts_total{outcome="payment_declined"}`: 1,
			})
			if v, ok := metricValue(text, `registrar_job_oldest_available_seconds{queue="default"}`); !ok || v <= 0 {
				t.Errorf("oldest available job of the default queue: %v seconds (present %v), want more than 0", v, ok)
			}
			if !regexp.MustCompile(`(?m)^registrar_build_info\{revision="[^"]+",version="[^"]+"\} 1$`).MatchString(text) {
				t.Errorf("no registrar_build_info:\n%s", text)
			}
			s.stop(t)

			// The whole system, its metrics behind a token: the pipeline
			// completes the five; a confirmation SendGrid rejects leaves one
			// needing attention.
			const token = "metrics-test-token-0123456789"
			e["REGISTRAR_ROLES"] = "web,worker"
			e["REGISTRAR_METRICS_TOKEN"] = token
			s = startRun(t, e)
			defer s.stop(t)
			murl = metricsURL(t, s.logs)
			if code, text := scrapeMetrics(t, murl, ""); code != http.StatusUnauthorized || strings.Contains(text, "registrar_seats") {
				t.Errorf("GET /metrics without the token = %d %q, want 401", code, text)
			}
			if code, _ := scrapeMetrics(t, murl, "not-the-metrics-token-000"); code != http.StatusUnauthorized {
				t.Errorf("GET /metrics with a wrong token = %d, want 401", code)
			}
			want := map[string]float64{
				`registrar_registrations{status="completed"}`: 5,
				`registrar_registrations{status="paid"}`:      0,
			}
			waitMetrics(t, murl, token, want)
			f.sendgrid.Reject(http.StatusBadRequest, "The from address does not match a verified Sender Identity.")
			code, c, err := post(http.DefaultClient, s.url, ticketBody(20, "standard", false), "")
			if err != nil || code != http.StatusAccepted {
				t.Fatalf("registration after the rejection: %d %v", code, err)
			}
			want = map[string]float64{
				"registrar_stats_up":                                1,
				`registrar_registrations{status="completed"}`:       5,
				`registrar_registrations{status="needs_attention"}`: 1,
				`registrar_registrations{status="processing"}`:      0,
				`registrar_registrations{status="paid"}`:            0,
				`registrar_seats_sold{ticket="standard"}`:           4,
				`registrar_seats_sold{ticket="limited"}`:            2,
				`registrar_jobs{queue="default",state="discarded"}`: 0,
				`registrar_jobs{queue="default",state="retryable"}`: 0,
			}
			if engine == "sqlite" {
				// The start settled the held seat: PayPal took nothing.
				want[`registrar_seats_held{ticket="standard"}`] = 0
				want[`registrar_seats_left{ticket="standard"}`] = 1
				want[`registrar_payment_incidents{kind="resolved_not_charged"}`] = 1
			}
			waitMetrics(t, murl, token, want)
			if st, err := getStatus(s.url, c.ID); err != nil || st.Status != "needs_attention" {
				t.Errorf("registration %s: %+v %v, want needs_attention", c.ID, st, err)
			}
			if strings.Contains(s.logs.String(), token) {
				t.Error("the log shows the metrics token")
			}
		})
	}
}

// TestMetricsListener: off serves no metrics; a busy address stops the
// start naming the variable, before the public listener is announced.
func TestMetricsListener(t *testing.T) {
	t.Parallel()
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		e := baseEnv(t.TempDir())
		e["REGISTRAR_METRICS_ADDR"] = "off"
		s := startRun(t, e)
		s.stop(t)
		if strings.Contains(s.logs.String(), "serving metrics") {
			t.Errorf("metrics served while off:\n%s", s.logs)
		}
	})
	t.Run("busy address", func(t *testing.T) {
		t.Parallel()
		ln, err := listenMetrics("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		e := baseEnv(t.TempDir())
		e["REGISTRAR_METRICS_ADDR"] = ln.Addr().String()
		var out, logs strings.Builder
		err = run(t.Context(), []string{"serve"}, e.get, strings.NewReader(""), &out, &logs)
		if err == nil || !strings.Contains(err.Error(), "REGISTRAR_METRICS_ADDR: cannot listen on "+ln.Addr().String()) {
			t.Errorf("start on a busy metrics address: %v", err)
		}
		if strings.Contains(out.String(), "registrar listening on") {
			t.Errorf("the public listener opened although the metrics one failed: %s", out.String())
		}
	})
}
