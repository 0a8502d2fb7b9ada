package main

import (
	"path/filepath"
	"strings"
	"testing"
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
