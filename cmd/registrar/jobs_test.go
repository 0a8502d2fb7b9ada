package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/config"
	"github.com/registrar/registrar/internal/event"
)

// TestJobConsole builds the process as serve does, on each engine, and asks
// River UI (mounted by the back office at /admin/jobs/) for its page and
// for the job list: it must work on River's SQLite driver as on
// PostgreSQL's. Then build's cleanup path releases everything.
func TestJobConsole(t *testing.T) {
	t.Parallel()
	for _, engineName := range []string{"sqlite", "postgres"} {
		t.Run(engineName, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			e := baseEnv(dir)
			if engineName == "postgres" {
				e["REGISTRAR_DATABASE_URL"] = postgresURL(t)
			}
			cfg, err := config.Load(e.get)
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			ctx := t.Context()
			db, err := openEngine(ctx, cfg.Database, log)
			if err != nil {
				t.Fatal(err)
			}
			defer db.close()
			ev := event.Demo()
			if err := db.store.SyncTickets(ctx, ev); err != nil {
				t.Fatal(err)
			}
			cfg.DataDir = filepath.Join(dir, "data")
			a := &app{cfg: cfg, ev: ev, db: db, log: log}
			if err := a.build(ctx); err != nil {
				t.Fatalf("build: %v", err)
			}
			get := func(path string) (int, string) {
				rec := httptest.NewRecorder()
				a.jobsUI.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				body, _ := io.ReadAll(rec.Result().Body)
				return rec.Code, string(body)
			}
			deadline := time.Now().Add(10 * time.Second)
			var code int
			var body string
			for {
				// River UI's caches start in the background.
				if code, body = get("/admin/jobs/api/jobs?state=available&limit=20"); code == http.StatusOK || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			var list struct {
				Data []json.RawMessage `json:"data"`
			}
			if code != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil {
				t.Fatalf("job list: %d %s", code, body)
			}
			if code, body := get("/admin/jobs/"); code != http.StatusOK || !strings.Contains(body, "<html") {
				t.Errorf("job console page: %d %.200s", code, body)
			}
			if err := a.shutdown(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		})
	}
}
