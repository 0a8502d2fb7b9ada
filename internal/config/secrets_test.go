package config

import (
	"slices"
	"strings"
	"testing"
)

func TestSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"every secret", secretEnv, []string{"PGPASSWORD1", "SSLPASS1", "PAYPALSECRET1", "SMTPPASSWORD1",
			"SG.SENDGRIDKEY1", "MAILCHIMPKEY1-us21", "ADMINPASSWORD1", "METRICSTOKEN1-0123456789"}},
		{"passwords decoded and as written", map[string]string{
			"REGISTRAR_DATABASE_URL": "postgres://registrar:p%40ss%2Fword@db:5432/r?sslmode=require&password=q%26r%3D1",
			"SMTP_URL":               "smtp://mailer:s%3Amtp+pass@127.0.0.1:587",
		}, []string{"p@ss/word", "p%40ss%2Fword", "q&r=1", "q%26r%3D1", "s:mtp+pass", "s%3Amtp+pass"}},
		{"nothing secret", map[string]string{"REGISTRAR_DATABASE_URL": "postgres://registrar@db:5432/r?sslmode=disable"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tc.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := c.Secrets()
			for _, w := range tc.want {
				if !slices.Contains(got, w) {
					t.Errorf("Secrets() = %q; want it to hold %q", got, w)
				}
			}
			for _, s := range got {
				if s == "" || strings.Contains(s, "sslmode") || s == "registrar" || s == "mailer" {
					t.Errorf("Secrets() = %q holds %q, which is not a secret", got, s)
				}
			}
			if tc.want == nil && len(got) > 0 {
				t.Errorf("Secrets() = %q; want none", got)
			}
		})
	}
}
