package main

import (
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBackupCommandRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		db   string
		want string
	}{
		{"postgres backup", []string{"backup", filepath.Join(dir, "b.db")}, "postgres://registrar:pw@127.0.0.1:1/r", "pg_dump"},
		{"postgres restore", []string{"restore", filepath.Join(dir, "b.db")}, "postgres://registrar:pw@127.0.0.1:1/r", "pg_restore"},
		{"no path", []string{"backup"}, "", "needs one argument"},
		{"missing database", []string{"backup", filepath.Join(dir, "b.db")}, "sqlite:" + filepath.Join(dir, "none.db"), "does not exist"},
		{"missing backup", []string{"restore", filepath.Join(dir, "none.db")}, "", "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := baseEnv(t.TempDir())
			if tc.db != "" {
				e["REGISTRAR_DATABASE_URL"] = tc.db
			}
			var out syncBuffer
			err := run(t.Context(), tc.args, e.get, strings.NewReader(""), &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run %v: %v; want an error saying %q", tc.args, err, tc.want)
			}
		})
	}
}

// A backup taken while registrations pour in holds every registration
// answered 202 before it started, passes integrity_check, and restores.
func TestBackupWhileRegistering(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	e := baseEnv(dir)
	s := startRun(t, e)
	var (
		mu       sync.Mutex
		accepted []string
		wg       sync.WaitGroup
	)
	// Eight clients register until the backup is done; it starts once
	// twenty were answered, so it runs under load, whatever the machine's
	// speed.
	stop := make(chan struct{})
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, c, err := post(http.DefaultClient, s.url, registrationBody(g*10000+i, "standard", false, "4111111111111111"), "")
				if err == nil && code == http.StatusAccepted {
					mu.Lock()
					accepted = append(accepted, c.ID)
					mu.Unlock()
				}
			}
		}()
	}
	var before []string
	for deadline := time.Now().Add(60 * time.Second); len(before) < 20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("only %d registrations answered in 60 s; want 20 before the backup", len(before))
		}
		mu.Lock()
		before = slices.Clone(accepted)
		mu.Unlock()
	}
	backup := filepath.Join(t.TempDir(), "backup.db")
	var out syncBuffer
	err := run(t.Context(), []string{"backup", backup}, e.get, strings.NewReader(""), &out, &out)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup while serving: %v", err)
	}
	s.stop(t)
	out = syncBuffer{}
	if err := run(t.Context(), []string{"restore", backup}, e.get, strings.NewReader(""), &out, &out); err != nil {
		t.Fatalf("restore: %v\n%s", err, out.String())
	}
	db := openDB(t, filepath.Join(dir, "registrar.db"))
	defer db.Close()
	var ok string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check = %q, %v", ok, err)
	}
	for _, id := range before {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM registrations WHERE id = ?`, id).Scan(&n); err != nil || n != 1 {
			t.Errorf("registration %s, answered before the backup, is not in it (%d, %v)", id, n, err)
		}
	}
}
