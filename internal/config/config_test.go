package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// env returns a getenv over vars.
func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// lineFormat is the shape of every problem: the variable, what is wrong, and
// the fix after a semicolon.
var lineFormat = regexp.MustCompile(`^[A-Z][A-Z0-9_]*: [^\n]+; [^\n]+$`)

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	got, err := Load(env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Addr:              ":8080",
		BaseURL:           "http://localhost:8080",
		Database:          Database{Engine: EngineSQLite, Path: "data/registrar.db"},
		Roles:             Roles{Web: true, Worker: true},
		Payment:           "test",
		PayPal:            PayPal{APIBase: "https://api-m.sandbox.paypal.com"},
		Email:             "outbox",
		SendGrid:          SendGrid{APIBase: "https://api.sendgrid.com"},
		MailingList:       "local",
		Mailchimp:         Mailchimp{DoubleOptIn: true},
		DataDir:           "data",
		RateLimit:         60,
		MaxConnsPerClient: 64,
		JobTimeout:        time.Minute,
		AdminEmail:        "admin@localhost",
		MetricsAddr:       "127.0.0.1:9090",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load() =\n  %#v\nwant\n  %#v", got, want)
	}
}

func TestLoadValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"mailchimp double opt-in by default", map[string]string{}, func(t *testing.T, c Config) {
			eq(t, c.Mailchimp.DoubleOptIn, true)
		}},
		{"mailchimp double opt-in off", map[string]string{"MAILCHIMP_DOUBLE_OPT_IN": "false"}, func(t *testing.T, c Config) {
			eq(t, c.Mailchimp.DoubleOptIn, false)
		}},
		{"rate limit off", map[string]string{"REGISTRAR_RATE_LIMIT": "0"}, func(t *testing.T, c Config) {
			eq(t, c.RateLimit, 0)
		}},
		{"rate limit set", map[string]string{"REGISTRAR_RATE_LIMIT": "600"}, func(t *testing.T, c Config) {
			eq(t, c.RateLimit, 600)
		}},
		{"connections per client by default", map[string]string{}, func(t *testing.T, c Config) {
			eq(t, c.MaxConnsPerClient, 64)
		}},
		{"connections per client off", map[string]string{"REGISTRAR_MAX_CONNS_PER_CLIENT": "0"}, func(t *testing.T, c Config) {
			eq(t, c.MaxConnsPerClient, 0)
		}},
		{"connections per client set", map[string]string{"REGISTRAR_MAX_CONNS_PER_CLIENT": "200"}, func(t *testing.T, c Config) {
			eq(t, c.MaxConnsPerClient, 200)
		}},
		{"retention off by default", map[string]string{}, func(t *testing.T, c Config) {
			eq(t, c.RetentionDays, 0)
		}},
		{"retention set", map[string]string{"REGISTRAR_RETENTION_DAYS": "90"}, func(t *testing.T, c Config) {
			eq(t, c.RetentionDays, 90)
		}},
		{"debug addr", map[string]string{"REGISTRAR_DEBUG_ADDR": "127.0.0.1:6060"}, func(t *testing.T, c Config) {
			eq(t, c.DebugAddr, "127.0.0.1:6060")
		}},
		{"addr with host", map[string]string{"REGISTRAR_ADDR": "127.0.0.1:9000"}, func(t *testing.T, c Config) {
			eq(t, c.Addr, "127.0.0.1:9000")
		}},
		{"addr IPv6 port 0", map[string]string{"REGISTRAR_ADDR": "[::1]:0"}, func(t *testing.T, c Config) {
			eq(t, c.Addr, "[::1]:0")
		}},
		{"base URL trailing slash trimmed", map[string]string{"REGISTRAR_BASE_URL": "https://tickets.example.org/"}, func(t *testing.T, c Config) {
			eq(t, c.BaseURL, "https://tickets.example.org")
		}},
		{"base URL with path", map[string]string{"REGISTRAR_BASE_URL": "http://localhost:8080/registrar/"}, func(t *testing.T, c Config) {
			eq(t, c.BaseURL, "http://localhost:8080/registrar")
		}},
		{"sqlite absolute path", map[string]string{"REGISTRAR_DATABASE_URL": "sqlite:/var/lib/registrar/r.db"}, func(t *testing.T, c Config) {
			eq(t, c.Database, Database{Engine: EngineSQLite, Path: "/var/lib/registrar/r.db"})
			eq(t, c.DataDir, "/var/lib/registrar")
		}},
		{"sqlite bare file", map[string]string{"REGISTRAR_DATABASE_URL": "sqlite:registrar.db"}, func(t *testing.T, c Config) {
			eq(t, c.Database, Database{Engine: EngineSQLite, Path: "registrar.db"})
			eq(t, c.DataDir, ".")
		}},
		{"postgres", map[string]string{"REGISTRAR_DATABASE_URL": "postgres://reg:pw@db:5432/registrar?sslmode=disable"}, func(t *testing.T, c Config) {
			eq(t, c.Database, Database{Engine: EnginePostgres, URL: "postgres://reg:pw@db:5432/registrar?sslmode=disable"})
			eq(t, c.DataDir, "data")
		}},
		{"postgresql scheme", map[string]string{"REGISTRAR_DATABASE_URL": "postgresql://db/registrar"}, func(t *testing.T, c Config) {
			eq(t, c.Database, Database{Engine: EnginePostgres, URL: "postgresql://db/registrar"})
		}},
		{"event file", map[string]string{"REGISTRAR_EVENT_FILE": "events/gopherfest.json"}, func(t *testing.T, c Config) {
			eq(t, c.EventFile, "events/gopherfest.json")
		}},
		{"role web", map[string]string{"REGISTRAR_ROLES": "web"}, func(t *testing.T, c Config) {
			eq(t, c.Roles, Roles{Web: true})
		}},
		{"role worker", map[string]string{"REGISTRAR_ROLES": "worker"}, func(t *testing.T, c Config) {
			eq(t, c.Roles, Roles{Worker: true})
		}},
		{"roles reversed with space", map[string]string{"REGISTRAR_ROLES": "worker, web"}, func(t *testing.T, c Config) {
			eq(t, c.Roles, Roles{Web: true, Worker: true})
		}},
		{"paypal", map[string]string{
			"REGISTRAR_PAYMENT": "paypal", "PAYPAL_CLIENT_ID": "cid", "PAYPAL_CLIENT_SECRET": "csecret",
			"PAYPAL_API_BASE": "https://api-m.paypal.com/",
		}, func(t *testing.T, c Config) {
			eq(t, c.Payment, "paypal")
			eq(t, c.PayPal, PayPal{ClientID: "cid", ClientSecret: "csecret", APIBase: "https://api-m.paypal.com"})
		}},
		{"metrics off", map[string]string{"REGISTRAR_METRICS_ADDR": "off"}, func(t *testing.T, c Config) {
			eq(t, c.MetricsAddr, "")
		}},
		{"metrics on a free loopback port", map[string]string{"REGISTRAR_METRICS_ADDR": "127.0.0.1:0"}, func(t *testing.T, c Config) {
			eq(t, c.MetricsAddr, "127.0.0.1:0")
			eq(t, c.MetricsToken, "")
		}},
		{"metrics on IPv6 loopback needs no token", map[string]string{"REGISTRAR_METRICS_ADDR": "[::1]:9090"}, func(t *testing.T, c Config) {
			eq(t, c.MetricsAddr, "[::1]:9090")
		}},
		{"metrics on every interface with a token", map[string]string{"REGISTRAR_METRICS_ADDR": ":9090", "REGISTRAR_METRICS_TOKEN": "0123456789abcdef"}, func(t *testing.T, c Config) {
			eq(t, c.MetricsAddr, ":9090")
			eq(t, c.MetricsToken, "0123456789abcdef")
		}},
		{"metrics token on loopback", map[string]string{"REGISTRAR_METRICS_TOKEN": "a-token-of-twenty-chars"}, func(t *testing.T, c Config) {
			eq(t, c.MetricsAddr, "127.0.0.1:9090")
			eq(t, c.MetricsToken, "a-token-of-twenty-chars")
		}},
		{"debug addr on IPv6 loopback", map[string]string{"REGISTRAR_DEBUG_ADDR": "[::1]:6060"}, func(t *testing.T, c Config) {
			eq(t, c.DebugAddr, "[::1]:6060")
		}},
		{"debug addr on localhost", map[string]string{"REGISTRAR_DEBUG_ADDR": "localhost:6060"}, func(t *testing.T, c Config) {
			eq(t, c.DebugAddr, "localhost:6060")
		}},
		{"provider fakes over http on loopback names", map[string]string{"PAYPAL_API_BASE": "http://localhost:43210", "SENDGRID_API_BASE": "http://[::1]:5000", "REGISTRAR_EMAIL": "sendgrid", "SENDGRID_API_KEY": "SG.key"}, func(t *testing.T, c Config) {
			eq(t, c.PayPal.APIBase, "http://localhost:43210")
			eq(t, c.SendGrid.APIBase, "http://[::1]:5000")
		}},
		{"paypal fake over http", map[string]string{"PAYPAL_API_BASE": "http://127.0.0.1:43210"}, func(t *testing.T, c Config) {
			eq(t, c.PayPal.APIBase, "http://127.0.0.1:43210")
		}},
		{"smtp", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "smtp://user:pw@mail.example.org:587"}, func(t *testing.T, c Config) {
			eq(t, c.Email, "smtp")
			eq(t, c.SMTPURL, "smtp://user:pw@mail.example.org:587")
		}},
		{"smtps without auth", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "smtps://mail.example.org:465"}, func(t *testing.T, c Config) {
			eq(t, c.SMTPURL, "smtps://mail.example.org:465")
		}},
		{"sendgrid", map[string]string{"REGISTRAR_EMAIL": "sendgrid", "SENDGRID_API_KEY": "SG.key", "SENDGRID_API_BASE": "http://127.0.0.1:5000/"}, func(t *testing.T, c Config) {
			eq(t, c.Email, "sendgrid")
			eq(t, c.SendGrid, SendGrid{APIKey: "SG.key", APIBase: "http://127.0.0.1:5000"})
		}},
		{"mailchimp base from key", map[string]string{"REGISTRAR_MAILING_LIST": "mailchimp", "MAILCHIMP_API_KEY": "abc123-us21", "MAILCHIMP_LIST_ID": "a1b2c3d4e5"}, func(t *testing.T, c Config) {
			eq(t, c.MailingList, "mailchimp")
			eq(t, c.Mailchimp, Mailchimp{DoubleOptIn: true, APIKey: "abc123-us21", ListID: "a1b2c3d4e5", APIBase: "https://us21.api.mailchimp.com/3.0"})
		}},
		{"mailchimp key with dashes", map[string]string{"MAILCHIMP_API_KEY": "ab-cd-us6"}, func(t *testing.T, c Config) {
			eq(t, c.Mailchimp.APIBase, "https://us6.api.mailchimp.com/3.0")
		}},
		{"mailchimp explicit base", map[string]string{"REGISTRAR_MAILING_LIST": "mailchimp", "MAILCHIMP_API_KEY": "nosuffix", "MAILCHIMP_LIST_ID": "list1", "MAILCHIMP_API_BASE": "http://127.0.0.1:9999/3.0/"}, func(t *testing.T, c Config) {
			eq(t, c.Mailchimp, Mailchimp{DoubleOptIn: true, APIKey: "nosuffix", ListID: "list1", APIBase: "http://127.0.0.1:9999/3.0"})
		}},
		{"admin password kept verbatim", map[string]string{"REGISTRAR_ADMIN_PASSWORD": " correct horse "}, func(t *testing.T, c Config) {
			eq(t, c.AdminPassword, " correct horse ")
		}},
		{"admin email lower-cased", map[string]string{"REGISTRAR_ADMIN_EMAIL": "Ops@Example.org"}, func(t *testing.T, c Config) {
			eq(t, c.AdminEmail, "ops@example.org")
		}},
		{"notify emails", map[string]string{"REGISTRAR_NOTIFY_EMAIL": "ops@example.org, Finance@Example.org,,ops@example.org"}, func(t *testing.T, c Config) {
			if !reflect.DeepEqual(c.NotifyEmails, []string{"ops@example.org", "finance@example.org"}) {
				t.Errorf("NotifyEmails = %q", c.NotifyEmails)
			}
		}},
		{"notify emails unset", nil, func(t *testing.T, c Config) {
			if c.NotifyEmails != nil {
				t.Errorf("NotifyEmails = %q, want none (the owners)", c.NotifyEmails)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tt.env))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func eq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

func TestLoadInvalid(t *testing.T) {
	t.Parallel()
	const (
		dbFix   = "use sqlite:PATH (e.g. sqlite:data/registrar.db) or postgres://USER:PASSWORD@HOST:5432/DBNAME"
		smtpFix = "use smtp://USER:PASSWORD@HOST:587 (STARTTLS) or smtps://USER:PASSWORD@HOST:465 (TLS)"
	)
	tests := []struct {
		name string
		env  map[string]string
		want []string // every line of the error, in order
	}{
		{"admin email not an address", map[string]string{"REGISTRAR_ADMIN_EMAIL": "admin"}, []string{
			`REGISTRAR_ADMIN_EMAIL: "admin" is not an email address; use the email address the first organiser logs in with, e.g. admin@example.org`}},
		{"admin email with a name", map[string]string{"REGISTRAR_ADMIN_EMAIL": "Ada <ada@example.org>"}, []string{
			`REGISTRAR_ADMIN_EMAIL: "ada <ada@example.org>" is not an email address; use the email address the first organiser logs in with, e.g. admin@example.org`}},
		{"notify email bad", map[string]string{"REGISTRAR_NOTIFY_EMAIL": "ops@example.org, nobody"}, []string{
			`REGISTRAR_NOTIFY_EMAIL: "nobody" is not an email address; use comma-separated addresses, e.g. ops@example.org,finance@example.org`}},
		{"addr without port", map[string]string{"REGISTRAR_ADDR": "localhost"}, []string{
			`REGISTRAR_ADDR: "localhost" is not host:port; use host:port, e.g. ":8080" or "127.0.0.1:8080"`}},
		{"addr port only", map[string]string{"REGISTRAR_ADDR": "8080"}, []string{
			`REGISTRAR_ADDR: "8080" is not host:port; use host:port, e.g. ":8080" or "127.0.0.1:8080"`}},
		{"addr port out of range", map[string]string{"REGISTRAR_ADDR": ":70000"}, []string{
			`REGISTRAR_ADDR: port "70000" is not a number from 0 to 65535; use host:port, e.g. ":8080" or "127.0.0.1:8080"`}},
		{"addr named port", map[string]string{"REGISTRAR_ADDR": ":http"}, []string{
			`REGISTRAR_ADDR: port "http" is not a number from 0 to 65535; use host:port, e.g. ":8080" or "127.0.0.1:8080"`}},
		{"addr surrounded by space", map[string]string{"REGISTRAR_ADDR": " :8080"}, []string{
			`REGISTRAR_ADDR: has leading or trailing white space; remove it`}},

		{"base URL without scheme", map[string]string{"REGISTRAR_BASE_URL": "tickets.example.org"}, []string{
			`REGISTRAR_BASE_URL: "tickets.example.org" is not an absolute http or https URL; use an absolute http or https URL such as "https://tickets.example.org"`}},
		{"base URL ftp", map[string]string{"REGISTRAR_BASE_URL": "ftp://tickets.example.org"}, []string{
			`REGISTRAR_BASE_URL: "ftp://tickets.example.org" is not an absolute http or https URL; use an absolute http or https URL such as "https://tickets.example.org"`}},
		{"base URL without host", map[string]string{"REGISTRAR_BASE_URL": "https://"}, []string{
			`REGISTRAR_BASE_URL: "https://" has no host; use an absolute http or https URL such as "https://tickets.example.org"`}},
		{"base URL with query", map[string]string{"REGISTRAR_BASE_URL": "https://x.example/?a=1"}, []string{
			`REGISTRAR_BASE_URL: "https://x.example/?a=1" must not have a query or fragment; use an absolute http or https URL such as "https://tickets.example.org"`}},
		{"base URL with credentials", map[string]string{"REGISTRAR_BASE_URL": "https://u:S3cr3tPW@x.example"}, []string{
			`REGISTRAR_BASE_URL: must not contain a user name or password; use an absolute http or https URL such as "https://tickets.example.org"`}},
		{"base URL user without password", map[string]string{"REGISTRAR_BASE_URL": "ftp://S3cr3tPW@x.example"}, []string{
			`REGISTRAR_BASE_URL: must not contain a user name or password; use an absolute http or https URL such as "https://tickets.example.org"`}},
		{"base URL with fragment", map[string]string{"REGISTRAR_BASE_URL": "https://x.example/#top"}, []string{
			`REGISTRAR_BASE_URL: "https://x.example/#top" must not have a query or fragment; use an absolute http or https URL such as "https://tickets.example.org"`}},
		{"base URL unparsable", map[string]string{"REGISTRAR_BASE_URL": "https://x.example:port"}, []string{
			`REGISTRAR_BASE_URL: is not a valid URL; use an absolute http or https URL such as "https://tickets.example.org"`}},

		{"sqlite without path", map[string]string{"REGISTRAR_DATABASE_URL": "sqlite:"}, []string{
			`REGISTRAR_DATABASE_URL: sqlite: needs a file path; use e.g. sqlite:data/registrar.db`}},
		{"sqlite with slashes", map[string]string{"REGISTRAR_DATABASE_URL": "sqlite://data/registrar.db"}, []string{
			`REGISTRAR_DATABASE_URL: write sqlite:PATH without "//"; use e.g. sqlite:data/registrar.db or sqlite:/var/lib/registrar/registrar.db`}},
		{"database bare path", map[string]string{"REGISTRAR_DATABASE_URL": "data/registrar.db"}, []string{
			`REGISTRAR_DATABASE_URL: is neither a sqlite: nor a postgres:// URL; ` + dbFix}},
		{"database key=value DSN", map[string]string{"REGISTRAR_DATABASE_URL": "host=db password=S3cr3tPW"}, []string{
			`REGISTRAR_DATABASE_URL: is neither a sqlite: nor a postgres:// URL; ` + dbFix}},
		{"database mysql", map[string]string{"REGISTRAR_DATABASE_URL": "mysql://u:S3cr3tPW@db/reg"}, []string{
			`REGISTRAR_DATABASE_URL: unsupported scheme "mysql"; ` + dbFix}},
		{"postgres without slashes", map[string]string{"REGISTRAR_DATABASE_URL": "postgres:db"}, []string{
			`REGISTRAR_DATABASE_URL: a PostgreSQL URL starts with postgres://; use postgres://USER:PASSWORD@HOST:5432/DBNAME`}},
		{"postgres bad escape", map[string]string{"REGISTRAR_DATABASE_URL": "postgres://reg:S3cr3tPW%zz@db/reg"}, []string{
			`REGISTRAR_DATABASE_URL: is not a valid PostgreSQL URL; use postgres://USER:PASSWORD@HOST:5432/DBNAME and percent-encode special characters in the password`}},

		{"role unknown", map[string]string{"REGISTRAR_ROLES": "api"}, []string{
			`REGISTRAR_ROLES: unknown role "api"; use web, worker, or web,worker`}},
		{"role unknown among known", map[string]string{"REGISTRAR_ROLES": "web,Worker"}, []string{
			`REGISTRAR_ROLES: unknown role "Worker"; use web, worker, or web,worker`}},
		{"roles empty list", map[string]string{"REGISTRAR_ROLES": ","}, []string{
			`REGISTRAR_ROLES: names no role; use web, worker, or web,worker`}},

		{"payment unknown", map[string]string{"REGISTRAR_PAYMENT": "foo"}, []string{
			`REGISTRAR_PAYMENT: unknown value "foo"; use test or paypal`}},
		{"payment wrong case", map[string]string{"REGISTRAR_PAYMENT": "PayPal"}, []string{
			`REGISTRAR_PAYMENT: unknown value "PayPal"; use test or paypal`}},
		{"paypal without credentials", map[string]string{"REGISTRAR_PAYMENT": "paypal"}, []string{
			`PAYPAL_CLIENT_ID: required when REGISTRAR_PAYMENT=paypal; set it to the client ID of your PayPal REST app`,
			`PAYPAL_CLIENT_SECRET: required when REGISTRAR_PAYMENT=paypal; set it to the secret of your PayPal REST app`}},
		{"paypal without secret", map[string]string{"REGISTRAR_PAYMENT": "paypal", "PAYPAL_CLIENT_ID": "cid"}, []string{
			`PAYPAL_CLIENT_SECRET: required when REGISTRAR_PAYMENT=paypal; set it to the secret of your PayPal REST app`}},
		{"paypal secret with newline", map[string]string{"REGISTRAR_PAYMENT": "paypal", "PAYPAL_CLIENT_ID": "cid", "PAYPAL_CLIENT_SECRET": "S3cr3tPW\n"}, []string{
			`PAYPAL_CLIENT_SECRET: has leading or trailing white space; remove it`}},
		{"paypal API base not absolute, even unselected", map[string]string{"PAYPAL_API_BASE": "api-m.paypal.com"}, []string{
			`PAYPAL_API_BASE: "api-m.paypal.com" is not an absolute http or https URL; use an absolute http or https URL such as "https://api-m.sandbox.paypal.com"`}},

		{"email unknown", map[string]string{"REGISTRAR_EMAIL": "ses"}, []string{
			`REGISTRAR_EMAIL: unknown value "ses"; use outbox, smtp, or sendgrid`}},
		{"smtp without URL", map[string]string{"REGISTRAR_EMAIL": "smtp"}, []string{
			`SMTP_URL: required when REGISTRAR_EMAIL=smtp; ` + smtpFix}},
		{"smtp URL wrong scheme", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "https://u:S3cr3tPW@mail.example.org:587"}, []string{
			`SMTP_URL: scheme "https" is not smtp or smtps; ` + smtpFix}},
		{"smtp URL without scheme", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "mail.example.org:587"}, []string{
			`SMTP_URL: scheme "mail.example.org" is not smtp or smtps; ` + smtpFix}},
		{"smtp URL without host", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "smtp://u:S3cr3tPW@:587"}, []string{
			`SMTP_URL: has no host; ` + smtpFix}},
		{"smtp URL without port", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "smtp://u:S3cr3tPW@mail.example.org"}, []string{
			`SMTP_URL: has no port; ` + smtpFix}},
		{"smtp URL port zero", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "smtp://mail.example.org:0"}, []string{
			`SMTP_URL: port "0" is not a number from 1 to 65535; ` + smtpFix}},
		{"smtp URL port too large", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "smtp://mail.example.org:65536"}, []string{
			`SMTP_URL: port "65536" is not a number from 1 to 65535; ` + smtpFix}},
		{"smtp URL unparsable", map[string]string{"REGISTRAR_EMAIL": "smtp", "SMTP_URL": "smtp://u:S3cr3tPW%zz@mail.example.org:587"}, []string{
			`SMTP_URL: is not a valid URL; ` + smtpFix + `, and percent-encode special characters in the password`}},
		{"smtp URL checked when unselected", map[string]string{"SMTP_URL": "smtp://u:S3cr3tPW@mail.example.org"}, []string{
			`SMTP_URL: has no port; ` + smtpFix}},
		{"sendgrid without key", map[string]string{"REGISTRAR_EMAIL": "sendgrid"}, []string{
			`SENDGRID_API_KEY: required when REGISTRAR_EMAIL=sendgrid; create an API key with Mail Send permission in SendGrid`}},
		{"sendgrid API base bad, even unselected", map[string]string{"SENDGRID_API_BASE": "api.sendgrid.com"}, []string{
			`SENDGRID_API_BASE: "api.sendgrid.com" is not an absolute http or https URL; use an absolute http or https URL such as "https://api.sendgrid.com"`}},

		{"mailing list unknown", map[string]string{"REGISTRAR_MAILING_LIST": "mailgun"}, []string{
			`REGISTRAR_MAILING_LIST: unknown value "mailgun"; use local or mailchimp`}},
		{"mailchimp without key and list", map[string]string{"REGISTRAR_MAILING_LIST": "mailchimp"}, []string{
			`MAILCHIMP_API_KEY: required when REGISTRAR_MAILING_LIST=mailchimp; create an API key under Account > Extras > API keys in Mailchimp`,
			`MAILCHIMP_LIST_ID: required when REGISTRAR_MAILING_LIST=mailchimp; use the audience ID from Audience > Settings in Mailchimp`}},
		{"mailchimp key without suffix", map[string]string{"REGISTRAR_MAILING_LIST": "mailchimp", "MAILCHIMP_API_KEY": "S3cr3tPW", "MAILCHIMP_LIST_ID": "list1"}, []string{
			`MAILCHIMP_API_KEY: has no data-center suffix such as "-us21"; copy the whole key from Mailchimp, or set MAILCHIMP_API_BASE`}},
		{"mailchimp key with empty suffix", map[string]string{"MAILCHIMP_API_KEY": "S3cr3tPW-"}, []string{
			`MAILCHIMP_API_KEY: has no data-center suffix such as "-us21"; copy the whole key from Mailchimp, or set MAILCHIMP_API_BASE`}},
		{"mailchimp key with hostile suffix", map[string]string{"MAILCHIMP_API_KEY": "S3cr3tPW-evil.example/x"}, []string{
			`MAILCHIMP_API_KEY: has no data-center suffix such as "-us21"; copy the whole key from Mailchimp, or set MAILCHIMP_API_BASE`}},
		{"mailchimp list id with slash", map[string]string{"MAILCHIMP_LIST_ID": "a/../b"}, []string{
			`MAILCHIMP_LIST_ID: "a/../b" is not a Mailchimp audience ID (letters and digits only); use the audience ID from Audience > Settings in Mailchimp`}},
		{"double opt-in not a boolean", map[string]string{"MAILCHIMP_DOUBLE_OPT_IN": "maybe"}, []string{
			`MAILCHIMP_DOUBLE_OPT_IN: "maybe" is not true or false; use true to make new members confirm by email first`}},
		{"job timeout too short", map[string]string{"REGISTRAR_JOB_TIMEOUT": "10ms"}, []string{
			`REGISTRAR_JOB_TIMEOUT: "10ms" is not a duration from 1s to 1h0m0s; use e.g. 1m or 30s`}},
		{"debug addr on every interface", map[string]string{"REGISTRAR_DEBUG_ADDR": ":6060"}, []string{
			`REGISTRAR_DEBUG_ADDR: ":6060" is not a loopback address: it would serve Go's profiles to the network; use e.g. "127.0.0.1:6060" or "localhost:6060"`}},
		{"debug addr unspecified IPv4", map[string]string{"REGISTRAR_DEBUG_ADDR": "0.0.0.0:6060"}, []string{
			`REGISTRAR_DEBUG_ADDR: "0.0.0.0:6060" is not a loopback address: it would serve Go's profiles to the network; use e.g. "127.0.0.1:6060" or "localhost:6060"`}},
		{"debug addr public IP", map[string]string{"REGISTRAR_DEBUG_ADDR": "192.0.2.7:6060"}, []string{
			`REGISTRAR_DEBUG_ADDR: "192.0.2.7:6060" is not a loopback address: it would serve Go's profiles to the network; use e.g. "127.0.0.1:6060" or "localhost:6060"`}},
		{"paypal API base over plain http", map[string]string{"PAYPAL_API_BASE": "http://api-m.paypal.com"}, []string{
			`PAYPAL_API_BASE: "http://api-m.paypal.com" must be an https:// URL (http:// is allowed for loopback hosts only): it would send the credentials and card data in clear; use e.g. "https://api-m.sandbox.paypal.com"`}},
		{"sendgrid API base over plain http", map[string]string{"SENDGRID_API_BASE": "http://api.sendgrid.com/"}, []string{
			`SENDGRID_API_BASE: "http://api.sendgrid.com/" must be an https:// URL (http:// is allowed for loopback hosts only): it would send the credentials and card data in clear; use e.g. "https://api.sendgrid.com"`}},
		{"mailchimp API base over plain http", map[string]string{"REGISTRAR_MAILING_LIST": "mailchimp", "MAILCHIMP_API_KEY": "k-us21", "MAILCHIMP_LIST_ID": "l", "MAILCHIMP_API_BASE": "http://us21.api.mailchimp.com/3.0"}, []string{
			`MAILCHIMP_API_BASE: "http://us21.api.mailchimp.com/3.0" must be an https:// URL (http:// is allowed for loopback hosts only): it would send the credentials and card data in clear; use e.g. "https://us21.api.mailchimp.com/3.0"`}},
		{"debug addr without port", map[string]string{"REGISTRAR_DEBUG_ADDR": "localhost"}, []string{
			`REGISTRAR_DEBUG_ADDR: "localhost" is not host:port; use host:port, e.g. ":8080" or "127.0.0.1:8080"`}},
		{"metrics on every interface without a token", map[string]string{"REGISTRAR_METRICS_ADDR": ":9090"}, []string{
			`REGISTRAR_METRICS_ADDR: ":9090" is not a loopback address and REGISTRAR_METRICS_TOKEN is not set, so anyone who reaches it would read the metrics, sales included; set REGISTRAR_METRICS_TOKEN to a random string of at least 16 characters (e.g. the output of ` + "`openssl rand -hex 32`" + `), or use a loopback address such as "127.0.0.1:9090"`}},
		{"metrics on a public IP without a token", map[string]string{"REGISTRAR_METRICS_ADDR": "192.0.2.7:9090"}, []string{
			`REGISTRAR_METRICS_ADDR: "192.0.2.7:9090" is not a loopback address and REGISTRAR_METRICS_TOKEN is not set, so anyone who reaches it would read the metrics, sales included; set REGISTRAR_METRICS_TOKEN to a random string of at least 16 characters (e.g. the output of ` + "`openssl rand -hex 32`" + `), or use a loopback address such as "127.0.0.1:9090"`}},
		{"metrics addr without port", map[string]string{"REGISTRAR_METRICS_ADDR": "localhost"}, []string{
			`REGISTRAR_METRICS_ADDR: "localhost" is not host:port; use host:port, e.g. ":8080" or "127.0.0.1:8080"`}},
		{"metrics token too short, never echoed", map[string]string{"REGISTRAR_METRICS_TOKEN": "S3cr3tPW"}, []string{
			"REGISTRAR_METRICS_TOKEN: is 8 characters long, fewer than 16; use a random string of at least 16 characters, e.g. the output of `openssl rand -hex 32`"}},
		{"metrics token with a space", map[string]string{"REGISTRAR_METRICS_TOKEN": "S3cr3tPW S3cr3tPW"}, []string{
			"REGISTRAR_METRICS_TOKEN: holds a character that is not visible ASCII (a space, a control or a non-ASCII character); use a random string of at least 16 characters, e.g. the output of `openssl rand -hex 32`"}},
		{"metrics token too short on every interface", map[string]string{"REGISTRAR_METRICS_ADDR": "0.0.0.0:9090", "REGISTRAR_METRICS_TOKEN": "S3cr3tPW"}, []string{
			"REGISTRAR_METRICS_TOKEN: is 8 characters long, fewer than 16; use a random string of at least 16 characters, e.g. the output of `openssl rand -hex 32`"}},
		{"rate limit negative", map[string]string{"REGISTRAR_RATE_LIMIT": "-1"}, []string{
			`REGISTRAR_RATE_LIMIT: "-1" is not a whole number from 0 to 1000000; use attempts per minute per client address, or 0 to turn the limit off`}},
		{"retention negative", map[string]string{"REGISTRAR_RETENTION_DAYS": "-30"}, []string{
			`REGISTRAR_RETENTION_DAYS: "-30" is not a whole number of days from 0 to 36500; use e.g. 90 to erase attendees' personal data 90 days after the event ends, or 0 to keep it`}},
		{"retention not a number", map[string]string{"REGISTRAR_RETENTION_DAYS": "3 months"}, []string{
			`REGISTRAR_RETENTION_DAYS: "3 months" is not a whole number of days from 0 to 36500; use e.g. 90 to erase attendees' personal data 90 days after the event ends, or 0 to keep it`}},
		{"rate limit not a number", map[string]string{"REGISTRAR_RATE_LIMIT": "lots"}, []string{
			`REGISTRAR_RATE_LIMIT: "lots" is not a whole number from 0 to 1000000; use attempts per minute per client address, or 0 to turn the limit off`}},
		{"connections per client negative", map[string]string{"REGISTRAR_MAX_CONNS_PER_CLIENT": "-5"}, []string{
			`REGISTRAR_MAX_CONNS_PER_CLIENT: "-5" is not a whole number from 0 to 1000000; use the open connections allowed per client address, e.g. 64, or 0 to turn the cap off (behind a reverse proxy, whose connections all come from its address)`}},
		{"connections per client not a number", map[string]string{"REGISTRAR_MAX_CONNS_PER_CLIENT": "many"}, []string{
			`REGISTRAR_MAX_CONNS_PER_CLIENT: "many" is not a whole number from 0 to 1000000; use the open connections allowed per client address, e.g. 64, or 0 to turn the cap off (behind a reverse proxy, whose connections all come from its address)`}},
		{"mailchimp API base bad", map[string]string{"MAILCHIMP_API_BASE": "us21.api.mailchimp.com"}, []string{
			`MAILCHIMP_API_BASE: "us21.api.mailchimp.com" is not an absolute http or https URL; use an absolute http or https URL such as "https://us21.api.mailchimp.com/3.0"`}},

		{"every problem at once", map[string]string{
			"REGISTRAR_ADDR":         "nope",
			"REGISTRAR_BASE_URL":     "nope",
			"REGISTRAR_DATABASE_URL": "nope",
			"REGISTRAR_ROLES":        "nope",
			"REGISTRAR_PAYMENT":      "paypal",
			"PAYPAL_API_BASE":        "nope",
			"REGISTRAR_EMAIL":        "smtp",
			"SENDGRID_API_BASE":      "nope",
			"REGISTRAR_MAILING_LIST": "mailchimp",
			"MAILCHIMP_API_KEY":      "nope",
		}, []string{
			`REGISTRAR_ADDR: "nope" is not host:port; use host:port, e.g. ":8080" or "127.0.0.1:8080"`,
			`REGISTRAR_BASE_URL: "nope" is not an absolute http or https URL; use an absolute http or https URL such as "https://tickets.example.org"`,
			`REGISTRAR_DATABASE_URL: is neither a sqlite: nor a postgres:// URL; ` + dbFix,
			`REGISTRAR_ROLES: unknown role "nope"; use web, worker, or web,worker`,
			`PAYPAL_API_BASE: "nope" is not an absolute http or https URL; use an absolute http or https URL such as "https://api-m.sandbox.paypal.com"`,
			`PAYPAL_CLIENT_ID: required when REGISTRAR_PAYMENT=paypal; set it to the client ID of your PayPal REST app`,
			`PAYPAL_CLIENT_SECRET: required when REGISTRAR_PAYMENT=paypal; set it to the secret of your PayPal REST app`,
			`SMTP_URL: required when REGISTRAR_EMAIL=smtp; ` + smtpFix,
			`SENDGRID_API_BASE: "nope" is not an absolute http or https URL; use an absolute http or https URL such as "https://api.sendgrid.com"`,
			`MAILCHIMP_API_KEY: has no data-center suffix such as "-us21"; copy the whole key from Mailchimp, or set MAILCHIMP_API_BASE`,
			`MAILCHIMP_LIST_ID: required when REGISTRAR_MAILING_LIST=mailchimp; use the audience ID from Audience > Settings in Mailchimp`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(tt.env))
			if err == nil {
				t.Fatalf("Load succeeded with %v, want errors %q", c, tt.want)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Errorf("Load returned a config with its error: %v", c)
			}
			lines := strings.Split(err.Error(), "\n")
			if strings.Join(lines, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Load error lines:\n  %s\nwant:\n  %s", strings.Join(lines, "\n  "), strings.Join(tt.want, "\n  "))
			}
			for _, line := range lines {
				if !lineFormat.MatchString(line) {
					t.Errorf("error line %q is not of the form \"VARIABLE: problem; fix\"", line)
				}
				if strings.Contains(line, "S3cr3tPW") {
					t.Errorf("error line %q reveals a secret", line)
				}
			}
		})
	}
}

// TestLoadErrorsNameTheVariable checks, for every variable that can be
// wrong on its own, that its error starts with its name.
func TestLoadErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"REGISTRAR_ADDR":          "x",
		"REGISTRAR_BASE_URL":      "x",
		"REGISTRAR_DATABASE_URL":  "x",
		"REGISTRAR_EVENT_FILE":    " x",
		"REGISTRAR_ROLES":         "x",
		"REGISTRAR_ADMIN_EMAIL":   "x",
		"REGISTRAR_NOTIFY_EMAIL":  "x",
		"REGISTRAR_PAYMENT":       "x",
		"PAYPAL_CLIENT_ID":        " x",
		"PAYPAL_CLIENT_SECRET":    " x",
		"PAYPAL_API_BASE":         "x",
		"REGISTRAR_EMAIL":         "x",
		"SMTP_URL":                "x",
		"SENDGRID_API_KEY":        " x",
		"SENDGRID_API_BASE":       "x",
		"REGISTRAR_MAILING_LIST":  "x",
		"MAILCHIMP_API_KEY":       "x",
		"MAILCHIMP_LIST_ID":       "-",
		"MAILCHIMP_API_BASE":      "x",
		"REGISTRAR_METRICS_ADDR":  "x",
		"REGISTRAR_METRICS_TOKEN": "short",
	}
	for name, value := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(env(map[string]string{name: value}))
			if err == nil {
				t.Fatalf("Load with %s=%q succeeded", name, value)
			}
			if !strings.HasPrefix(err.Error(), name+": ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("Load with %s=%q: error %q does not name just %s", name, value, err, name)
			}
		})
	}
}

// secretEnv sets every secret, each a distinct string that must never be
// printed.
var secretEnv = map[string]string{
	"REGISTRAR_DATABASE_URL":   "postgres://registrar:PGPASSWORD1@db:5432/registrar?sslmode=require&sslpassword=SSLPASS1",
	"REGISTRAR_PAYMENT":        "paypal",
	"PAYPAL_CLIENT_ID":         "paypal-client-id",
	"PAYPAL_CLIENT_SECRET":     "PAYPALSECRET1",
	"REGISTRAR_EMAIL":          "smtp",
	"SMTP_URL":                 "smtps://mailer:SMTPPASSWORD1@mail.example.org:465",
	"SENDGRID_API_KEY":         "SG.SENDGRIDKEY1",
	"REGISTRAR_MAILING_LIST":   "mailchimp",
	"MAILCHIMP_API_KEY":        "MAILCHIMPKEY1-us21",
	"MAILCHIMP_LIST_ID":        "a1b2c3d4e5",
	"REGISTRAR_ADMIN_PASSWORD": "ADMINPASSWORD1",
	"REGISTRAR_METRICS_ADDR":   ":9090",
	"REGISTRAR_METRICS_TOKEN":  "METRICSTOKEN1-0123456789",
}

var secrets = []string{"PGPASSWORD1", "SSLPASS1", "PAYPALSECRET1", "SMTPPASSWORD1", "SENDGRIDKEY1", "MAILCHIMPKEY1", "ADMINPASSWORD1", "METRICSTOKEN1"}

func TestLogValueMasksSecrets(t *testing.T) {
	t.Parallel()
	c, err := Load(env(secretEnv))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	out := buf.String()
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("log reveals secret %q:\n%s", s, out)
		}
	}

	var record struct {
		Config struct {
			Database struct{ Engine, URL string }
			PayPal   struct {
				ClientID     string `json:"client_id"`
				ClientSecret string `json:"client_secret"`
			}
			SMTPURL  string `json:"smtp_url"`
			SendGrid struct {
				APIKey string `json:"api_key"`
			}
			Mailchimp struct {
				APIKey  string `json:"api_key"`
				ListID  string `json:"list_id"`
				APIBase string `json:"api_base"`
			}
			AdminPassword string `json:"admin_password"`
			MetricsAddr   string `json:"metrics_addr"`
			MetricsToken  string `json:"metrics_token"`
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &record); err != nil {
		t.Fatalf("log is not JSON: %v\n%s", err, out)
	}
	got := record.Config
	checks := []struct{ field, got, want string }{
		{"database.engine", got.Database.Engine, "postgres"},
		{"database.url", got.Database.URL, "postgres://registrar:***@db:5432/registrar?sslmode=require&sslpassword=***"},
		{"paypal.client_id", got.PayPal.ClientID, "paypal-client-id"},
		{"paypal.client_secret", got.PayPal.ClientSecret, "***"},
		{"smtp_url", got.SMTPURL, "smtps://mailer:***@mail.example.org:465"},
		{"sendgrid.api_key", got.SendGrid.APIKey, "***"},
		{"mailchimp.api_key", got.Mailchimp.APIKey, "***"},
		{"mailchimp.list_id", got.Mailchimp.ListID, "a1b2c3d4e5"},
		{"mailchimp.api_base", got.Mailchimp.APIBase, "https://us21.api.mailchimp.com/3.0"},
		{"admin_password", got.AdminPassword, "***"},
		{"metrics_addr", got.MetricsAddr, ":9090"},
		{"metrics_token", got.MetricsToken, "***"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("logged %s = %q, want %q", c.field, c.got, c.want)
		}
	}
}

func TestLogValueUnsetSecretsAreEmpty(t *testing.T) {
	t.Parallel()
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("starting", "config", c)
	if strings.Contains(buf.String(), "***") {
		t.Errorf("unset secrets are shown as set: %s", buf.String())
	}
}

// TestStringMasksSecrets checks that printing a Config by mistake, with any
// verb that uses String, reveals no secret.
func TestStringMasksSecrets(t *testing.T) {
	t.Parallel()
	c, err := Load(env(secretEnv))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, verb := range []string{"%v", "%+v", "%s"} {
		out := fmt.Sprintf(verb, c)
		if !strings.Contains(out, `paypal.client_secret="***"`) {
			t.Errorf("%s: %s", verb, out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s reveals secret %q: %s", verb, s, out)
			}
		}
	}
}

func TestMaskURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"", ""},
		{"https://api.sendgrid.com", "https://api.sendgrid.com"},
		{"postgres://db/registrar", "postgres://db/registrar"},
		{"postgres://registrar@db/registrar", "postgres://registrar@db/registrar"},
		{"postgres://registrar:pw@db/registrar", "postgres://registrar:***@db/registrar"},
		{"postgres://us%3Aer:p%40ss@db/r", "postgres://us%3Aer:***@db/r"},
		{"postgres://db/r?password=pw&sslmode=disable", "postgres://db/r?password=***&sslmode=disable"},
		{"postgres://db/r?PassWord=pw", "postgres://db/r?PassWord=***"},
		{"smtp://u:pw@h:587", "smtp://u:***@h:587"},
		{"postgres://u:pw%zz@db/r", "***"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			if got := maskURL(tt.in); got != tt.want {
				t.Errorf("maskURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
