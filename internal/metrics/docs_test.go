package metrics

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// families returns every metric family a process serves, by name, with
// each vector given a series so that it shows.
func families(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	m := New()
	m.AddOperator(Operator{Source: &fakeSource{stats: OperatorStats{
		Tickets:         []TicketSeats{{Ticket: "standard", Capacity: 1}},
		OldestAvailable: map[string]time.Duration{"default": time.Second},
	}}, EventID: "conf", Queues: []string{"default"}})
	m.Attempt("accepted")
	m.Activity("save_order", "succeeded")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /x", func(http.ResponseWriter, *http.Request) {})
	m.Wrap(mux).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	got, err := m.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range got {
		out[f.GetName()] = f
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:registrar|go|process)_[a-z0-9_]+\b`)

// checkNames fails for every metric a query names that no process serves
// (a histogram's _bucket, _sum and _count series included).
func checkNames(t *testing.T, where, query string, fams map[string]*dto.MetricFamily) {
	t.Helper()
	names := metricName.FindAllString(query, -1)
	if len(names) == 0 {
		t.Errorf("%s: %q names no metric", where, query)
	}
	for _, name := range names {
		if _, ok := fams[name]; ok {
			continue
		}
		found := false
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := fams[strings.TrimSuffix(name, suffix)]; ok && strings.HasSuffix(name, suffix) && f.GetType() == dto.MetricType_HISTOGRAM {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %q names %s, which no process serves", where, query, name)
		}
	}
	if strings.Count(query, "(") != strings.Count(query, ")") || strings.Count(query, "{") != strings.Count(query, "}") {
		t.Errorf("%s: %q has unbalanced brackets", where, query)
	}
}

// TestGrafanaDashboard checks that docs/grafana-dashboard.json is a
// dashboard whose every query names metrics registrar serves.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	}
	type panel struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		GridPos *struct{ X, Y, W, H int } `json:"gridPos"`
		Targets []target                  `json:"targets"`
		Panels  []json.RawMessage         `json:"panels"`
	}
	var dash struct {
		Title         string            `json:"title"`
		UID           string            `json:"uid"`
		SchemaVersion int               `json:"schemaVersion"`
		Panels        []json.RawMessage `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion < 30 || len(dash.Panels) == 0 {
		t.Fatalf("not a dashboard: title %q uid %q schemaVersion %d, %d panels", dash.Title, dash.UID, dash.SchemaVersion, len(dash.Panels))
	}
	fams := families(t)
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		if q, ok := v.Query.(map[string]any); ok {
			checkNames(t, "variable "+v.Name, q["query"].(string), fams)
		}
	}
	ids := map[int]bool{}
	queries := 0
	var walk func(raw []json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("panel: %v", err)
			}
			if ids[p.ID] || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
			}
			ids[p.ID] = true
			if p.Title == "" || p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %d %q: no title or no place on the 24-column grid: %+v", p.ID, p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || !vars[strings.Trim(p.Datasource.UID, "${}")] {
				t.Errorf("panel %q: data source %+v is not the dashboard's Prometheus variable", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				checkNames(t, "panel "+p.Title, tg.Expr, fams)
				for _, v := range regexp.MustCompile(`\$(\w+)`).FindAllStringSubmatch(tg.Expr, -1) {
					if !vars[v[1]] && !strings.HasPrefix(v[1], "__") {
						t.Errorf("panel %q: %q uses $%s, which the dashboard does not define", p.Title, tg.Expr, v[1])
					}
				}
			}
		}
	}
	walk(dash.Panels)
	// Every figure an organiser alerts on has a panel.
	for name := range fams {
		if strings.HasPrefix(name, "registrar_") && !strings.Contains(string(data), name) {
			t.Errorf("the dashboard shows no %s", name)
		}
	}
	if queries < 10 {
		t.Errorf("only %d queries", queries)
	}
}

// TestMetricsDocumented checks that docs/metrics.md lists every registrar
// metric and no other, and that the README's alert rules name served
// metrics.
func TestMetricsDocumented(t *testing.T) {
	t.Parallel()
	fams := families(t)
	doc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := regexp.MustCompile("(?m)^\\| `(registrar_[a-z_]+)` \\|").FindAllStringSubmatch(string(doc), -1)
	var names []string
	for _, d := range documented {
		names = append(names, d[1])
		if _, ok := fams[d[1]]; !ok {
			t.Errorf("docs/metrics.md documents %s, which no process serves", d[1])
		}
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "registrar_") && !slices.Contains(names, name) {
			t.Errorf("docs/metrics.md does not document %s (%s)", name, f.GetHelp())
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	exprs := regexp.MustCompile(`(?m)^\s+expr: (.+)$`).FindAllStringSubmatch(string(readme), -1)
	if len(exprs) < 3 {
		t.Fatalf("the README has %d alert rules; want at least 3", len(exprs))
	}
	for _, e := range exprs {
		checkNames(t, "README alert", e[1], fams)
	}
}
