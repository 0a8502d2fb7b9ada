package admin_test

import (
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/registration"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// cssVersion hides the stylesheet's content hash, so that a change of
// style alone does not change the pages' golden files.
var cssVersion = regexp.MustCompile(`admin\.css\?v=[0-9a-f]+`)

// TestGoldenPages compares key pages with their golden files
// (go test -run TestGoldenPages -update rewrites them).
func TestGoldenPages(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, eng engine) {
		e := newEnv(t, eng)
		e.seed(
			seedReg{First: "Grace", Last: "Hopper", Created: t0.Add(-time.Hour)},
			seedReg{First: "Ada", Last: "Lovelace", Ticket: "student", Created: t0.AddDate(0, 0, -3)},
			seedReg{First: "Alan", Last: "Turing", Ticket: "community", Created: t0.AddDate(0, 0, -8), Status: registration.StatusNeedsAttention},
		)
		_, ck := e.account(admin.RoleFinance)
		cases := []struct {
			name, path, cookie string
			status             int
		}{
			{"login", "/admin/login?next=%2Fadmin%2Faudit", "", http.StatusOK},
			{"dashboard", "/admin", ck, http.StatusOK},
			{"forbidden", "/admin/accounts", ck, http.StatusForbidden},
		}
		for _, c := range cases {
			w := e.get(c.path, c.cookie)
			if w.Code != c.status {
				t.Fatalf("%s: %d", c.name, w.Code)
			}
			got := cssVersion.ReplaceAll(w.Body.Bytes(), []byte("admin.css?v=VERSION"))
			path := filepath.Join("testdata", c.name+".html.golden")
			if *update {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: %v (run with -update to create it)", c.name, err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from %s (run with -update after checking the change):\n%s", c.name, path, got)
			}
		}
	})
}
