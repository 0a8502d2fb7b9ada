// Package config provides registrar's configuration, read from the
// environment and validated all at once: every problem is reported, one line
// each, naming the variable and how to fix it. Secrets never appear in error
// messages or in the configuration's log form.
package config

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Engine is a database engine.
type Engine string

// The supported database engines.
const (
	EngineSQLite   Engine = "sqlite"
	EnginePostgres Engine = "postgres"
)

// Database says where the state lives.
type Database struct {
	Engine Engine
	Path   string // SQLite file path
	URL    string // PostgreSQL URL; secret: it may hold a password
}

// Roles says which roles this process runs.
type Roles struct {
	Web    bool
	Worker bool
}

// PayPal holds the PayPal REST credentials.
type PayPal struct {
	ClientID     string
	ClientSecret string // secret
	APIBase      string // no trailing slash
}

// SendGrid holds the SendGrid credentials.
type SendGrid struct {
	APIKey  string // secret
	APIBase string // no trailing slash
}

// Mailchimp holds the Mailchimp credentials and audience.
type Mailchimp struct {
	DoubleOptIn bool   // MAILCHIMP_DOUBLE_OPT_IN (default true): new members start "pending" until they confirm
	APIKey      string // secret
	ListID      string
	APIBase     string // e.g. https://us21.api.mailchimp.com/3.0, no trailing slash
}

// Config is the whole configuration of one registrar process.
type Config struct {
	Addr      string // listen address, host:port
	BaseURL   string // public URL, no trailing slash
	Database  Database
	EventFile string // "" means the built-in demo event
	Roles     Roles

	Payment string // "test" or "paypal"
	PayPal  PayPal

	Email    string // "outbox", "smtp" or "sendgrid"
	SMTPURL  string // secret: it may hold a password
	SendGrid SendGrid

	MailingList string // "local" or "mailchimp"
	Mailchimp   Mailchimp

	// AdminEmail is the first owner account of the back office
	// (REGISTRAR_ADMIN_EMAIL), lower-cased.
	AdminEmail    string
	AdminPassword string // secret; "" means generate one on first start
	// NotifyEmails are where organiser notifications go
	// (REGISTRAR_NOTIFY_EMAIL, comma-separated); empty means the owners.
	NotifyEmails []string

	// JobTimeout bounds one attempt of one pipeline job
	// (REGISTRAR_JOB_TIMEOUT); a job left running by a dead worker is
	// rescued after twice this.
	JobTimeout time.Duration

	// RateLimit is how many registration attempts one client address may
	// make per minute (REGISTRAR_RATE_LIMIT); 0 turns the limit off.
	RateLimit int
	// RetentionDays erases the personal data of the event's registrations
	// that many days after the event ended (REGISTRAR_RETENTION_DAYS); 0
	// keeps them.
	RetentionDays int

	// MaxConnsPerClient is how many connections one client (an IPv4
	// address, or an IPv6 /64) may hold open to the public listener at
	// once (REGISTRAR_MAX_CONNS_PER_CLIENT); 0 turns the cap off.
	MaxConnsPerClient int

	// DebugAddr is where /debug/pprof/ is served (REGISTRAR_DEBUG_ADDR);
	// "" turns it off. It is a separate listener so that profiles are
	// never exposed on the public address.
	DebugAddr string

	// MetricsAddr is where /metrics is served (REGISTRAR_METRICS_ADDR,
	// default 127.0.0.1:9090); "" (the value off) turns it off. It is a
	// listener of its own, never the public address: the metrics show
	// sales.
	MetricsAddr string
	// MetricsToken, when set (REGISTRAR_METRICS_TOKEN), is the bearer
	// token /metrics requires; secret. A metrics address that is not a
	// loopback one needs it.
	MetricsToken string

	// DataDir holds local state: the directory of the SQLite file, or "data"
	// with PostgreSQL. The email outbox is DataDir/outbox.
	DataDir string
}

// Defaults of the variables that have one.
const (
	defaultAddr              = ":8080"
	defaultBaseURL           = "http://localhost:8080"
	defaultDatabaseURL       = "sqlite:data/registrar.db"
	defaultRoles             = "web,worker"
	defaultPayment           = "test"
	defaultPayPalAPIBase     = "https://api-m.sandbox.paypal.com"
	defaultEmail             = "outbox"
	defaultSendGridAPIBase   = "https://api.sendgrid.com"
	defaultMailingList       = "local"
	defaultRateLimit         = "60"
	defaultMaxConnsPerClient = "64"
	defaultAdminEmail        = "admin@localhost"
	postgresDataDir          = "data"
	defaultMetricsAddr       = "127.0.0.1:9090"
)

const (
	sqliteExample   = "sqlite:data/registrar.db"
	postgresExample = "postgres://USER:PASSWORD@HOST:5432/DBNAME"
	smtpExample     = "smtp://USER:PASSWORD@HOST:587 (STARTTLS) or smtps://USER:PASSWORD@HOST:465 (TLS)"
)

// problems collects configuration errors, one line each.
type problems []error

func (p *problems) add(variable, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", variable, fmt.Sprintf(format, args...)))
}

// Load reads the configuration from getenv (os.Getenv in production), applies
// the defaults and validates everything. On error it returns every problem
// found, joined with errors.Join, each on its own line.
func Load(getenv func(string) string) (Config, error) {
	var p problems
	get := func(name, def string) string {
		v := getenv(name)
		if v == "" {
			return def
		}
		if name != "REGISTRAR_ADMIN_PASSWORD" && strings.TrimSpace(v) != v {
			p.add(name, "has leading or trailing white space; remove it")
		}
		return v
	}

	var c Config
	c.Addr = get("REGISTRAR_ADDR", defaultAddr)
	checkAddr(&p, "REGISTRAR_ADDR", c.Addr)
	c.BaseURL = httpURL(&p, "REGISTRAR_BASE_URL", get("REGISTRAR_BASE_URL", defaultBaseURL), "https://tickets.example.org")
	c.Database, c.DataDir = database(&p, "REGISTRAR_DATABASE_URL", get("REGISTRAR_DATABASE_URL", defaultDatabaseURL))
	c.EventFile = get("REGISTRAR_EVENT_FILE", "")
	c.Roles = roles(&p, "REGISTRAR_ROLES", get("REGISTRAR_ROLES", defaultRoles))

	c.Payment = choice(&p, "REGISTRAR_PAYMENT", get("REGISTRAR_PAYMENT", defaultPayment), "test", "paypal")
	c.PayPal = PayPal{
		ClientID:     get("PAYPAL_CLIENT_ID", ""),
		ClientSecret: get("PAYPAL_CLIENT_SECRET", ""),
		APIBase:      providerURL(&p, "PAYPAL_API_BASE", get("PAYPAL_API_BASE", defaultPayPalAPIBase), defaultPayPalAPIBase),
	}
	if c.Payment == "paypal" {
		require(&p, "PAYPAL_CLIENT_ID", c.PayPal.ClientID, "REGISTRAR_PAYMENT=paypal", "set it to the client ID of your PayPal REST app")
		require(&p, "PAYPAL_CLIENT_SECRET", c.PayPal.ClientSecret, "REGISTRAR_PAYMENT=paypal", "set it to the secret of your PayPal REST app")
	}

	c.Email = choice(&p, "REGISTRAR_EMAIL", get("REGISTRAR_EMAIL", defaultEmail), "outbox", "smtp", "sendgrid")
	c.SMTPURL = get("SMTP_URL", "")
	if c.SMTPURL != "" {
		checkSMTPURL(&p, "SMTP_URL", c.SMTPURL)
	} else if c.Email == "smtp" {
		require(&p, "SMTP_URL", "", "REGISTRAR_EMAIL=smtp", "use "+smtpExample)
	}
	c.SendGrid = SendGrid{
		APIKey:  get("SENDGRID_API_KEY", ""),
		APIBase: providerURL(&p, "SENDGRID_API_BASE", get("SENDGRID_API_BASE", defaultSendGridAPIBase), defaultSendGridAPIBase),
	}
	if c.Email == "sendgrid" {
		require(&p, "SENDGRID_API_KEY", c.SendGrid.APIKey, "REGISTRAR_EMAIL=sendgrid", "create an API key with Mail Send permission in SendGrid")
	}

	c.MailingList = choice(&p, "REGISTRAR_MAILING_LIST", get("REGISTRAR_MAILING_LIST", defaultMailingList), "local", "mailchimp")
	c.Mailchimp = mailchimp(&p, get("MAILCHIMP_API_KEY", ""), get("MAILCHIMP_LIST_ID", ""), get("MAILCHIMP_API_BASE", ""))
	c.Mailchimp.DoubleOptIn = boolean(&p, "MAILCHIMP_DOUBLE_OPT_IN", get("MAILCHIMP_DOUBLE_OPT_IN", "true"))
	if c.MailingList == "mailchimp" {
		require(&p, "MAILCHIMP_API_KEY", c.Mailchimp.APIKey, "REGISTRAR_MAILING_LIST=mailchimp", "create an API key under Account > Extras > API keys in Mailchimp")
		require(&p, "MAILCHIMP_LIST_ID", c.Mailchimp.ListID, "REGISTRAR_MAILING_LIST=mailchimp", "use the audience ID from Audience > Settings in Mailchimp")
	}

	c.AdminEmail = strings.ToLower(get("REGISTRAR_ADMIN_EMAIL", defaultAdminEmail))
	checkEmail(&p, "REGISTRAR_ADMIN_EMAIL", c.AdminEmail, "use the email address the first organiser logs in with, e.g. admin@example.org")
	c.AdminPassword = get("REGISTRAR_ADMIN_PASSWORD", "")
	c.NotifyEmails = emailList(&p, "REGISTRAR_NOTIFY_EMAIL", get("REGISTRAR_NOTIFY_EMAIL", ""))
	c.JobTimeout = duration(&p, "REGISTRAR_JOB_TIMEOUT", get("REGISTRAR_JOB_TIMEOUT", "1m"), time.Second, time.Hour)
	c.RateLimit = rateLimit(&p, "REGISTRAR_RATE_LIMIT", get("REGISTRAR_RATE_LIMIT", defaultRateLimit))
	c.MaxConnsPerClient = connsPerClient(&p, "REGISTRAR_MAX_CONNS_PER_CLIENT", get("REGISTRAR_MAX_CONNS_PER_CLIENT", defaultMaxConnsPerClient))
	c.RetentionDays = retentionDays(&p, "REGISTRAR_RETENTION_DAYS", get("REGISTRAR_RETENTION_DAYS", "0"))
	if c.DebugAddr = get("REGISTRAR_DEBUG_ADDR", ""); c.DebugAddr != "" {
		checkAddr(&p, "REGISTRAR_DEBUG_ADDR", c.DebugAddr)
		loopbackAddr(&p, "REGISTRAR_DEBUG_ADDR", c.DebugAddr)
	}
	c.MetricsAddr, c.MetricsToken = metricsListener(&p, get("REGISTRAR_METRICS_ADDR", defaultMetricsAddr), get("REGISTRAR_METRICS_TOKEN", ""))

	if len(p) > 0 {
		return Config{}, errors.Join(p...)
	}
	return c, nil
}

// checkEmail checks a bare email address (local@domain, no display name).
// A domain without a dot (admin@localhost) is allowed: the address is a
// login name as much as a mailbox.
func checkEmail(p *problems, name, v, fix string) {
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" || len(v) > 254 {
		p.add(name, "%q is not an email address; %s", v, fix)
	}
}

// emailList parses comma-separated email addresses, lower-cased, without
// repeats.
func emailList(p *problems, name, v string) []string {
	var out []string
	seen := map[string]bool{}
	for part := range strings.SplitSeq(v, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if part == "" || seen[part] {
			continue
		}
		before := len(*p)
		checkEmail(p, name, part, "use comma-separated addresses, e.g. ops@example.org,finance@example.org")
		if len(*p) == before {
			seen[part] = true
			out = append(out, part)
		}
	}
	return out
}

func duration(p *problems, name, v string, lo, hi time.Duration) time.Duration {
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		p.add(name, "%q is not a duration from %s to %s; use e.g. 1m or 30s", v, lo, hi)
		return lo
	}
	return d
}

func boolean(p *problems, name, v string) bool {
	switch strings.ToLower(v) {
	case "true", "1", "yes":
		return true
	case "false", "0", "no":
		return false
	}
	p.add(name, "%q is not true or false; use true to make new members confirm by email first", v)
	return false
}

func rateLimit(p *problems, name, v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1_000_000 {
		p.add(name, "%q is not a whole number from 0 to 1000000; use attempts per minute per client address, or 0 to turn the limit off", v)
		return 0
	}
	return n
}

func connsPerClient(p *problems, name, v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 1_000_000 {
		p.add(name, "%q is not a whole number from 0 to 1000000; use the open connections allowed per client address, e.g. 64, or 0 to turn the cap off (behind a reverse proxy, whose connections all come from its address)", v)
		return 0
	}
	return n
}

func retentionDays(p *problems, name, v string) int {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 36_500 {
		p.add(name, "%q is not a whole number of days from 0 to 36500; use e.g. 90 to erase attendees' personal data 90 days after the event ends, or 0 to keep it", v)
		return 0
	}
	return n
}

func require(p *problems, name, value, when, fix string) {
	if value == "" {
		p.add(name, "required when %s; %s", when, fix)
	}
}

func checkAddr(p *problems, name, v string) {
	const fix = `use host:port, e.g. ":8080" or "127.0.0.1:8080"`
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.add(name, "%q is not host:port; %s", v, fix)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p.add(name, "port %q is not a number from 0 to 65535; %s", port, fix)
	}
}

// loopbackAddr checks that the host of the listen address v is a loopback
// one: what is served there (Go's profiles) is for the operator alone.
func loopbackAddr(p *problems, name, v string) {
	host, _, err := net.SplitHostPort(v)
	if err != nil {
		return // checkAddr reported it
	}
	if !isLoopback(host) {
		p.add(name, "%q is not a loopback address: it would serve Go's profiles to the network; use e.g. \"127.0.0.1:6060\" or \"localhost:6060\"", v)
	}
}

// minMetricsToken is the shortest REGISTRAR_METRICS_TOKEN accepted.
const minMetricsToken = 16

// metricsListener checks REGISTRAR_METRICS_ADDR and REGISTRAR_METRICS_TOKEN:
// "off" turns the listener off; the token, when set, is at least
// minMetricsToken visible ASCII characters (it travels in a header); an
// address other than a loopback one needs a token, since the metrics show
// sales. The token is never echoed.
func metricsListener(p *problems, addr, token string) (string, string) {
	const addrVar, tokenVar = "REGISTRAR_METRICS_ADDR", "REGISTRAR_METRICS_TOKEN"
	tokenFix := fmt.Sprintf("use a random string of at least %d characters, e.g. the output of `openssl rand -hex 32`", minMetricsToken)
	if token != "" {
		switch {
		case len(token) < minMetricsToken:
			p.add(tokenVar, "is %d characters long, fewer than %d; %s", len(token), minMetricsToken, tokenFix)
		case !isVisibleASCII(token):
			p.add(tokenVar, "holds a character that is not visible ASCII (a space, a control or a non-ASCII character); %s", tokenFix)
		}
	}
	if addr == "off" {
		return "", token
	}
	before := len(*p)
	checkAddr(p, addrVar, addr)
	if len(*p) > before {
		return addr, token
	}
	if host, _, _ := net.SplitHostPort(addr); !isLoopback(host) && token == "" {
		p.add(addrVar, "%q is not a loopback address and %s is not set, so anyone who reaches it would read the metrics, sales included; set %s to a random string of at least %d characters (e.g. the output of `openssl rand -hex 32`), or use a loopback address such as %q",
			addr, tokenVar, tokenVar, minMetricsToken, defaultMetricsAddr)
	}
	return addr, token
}

// isVisibleASCII reports whether s is made of printable ASCII characters
// other than the space.
func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '!' || s[i] > '~' {
			return false
		}
	}
	return true
}

// isLoopback reports whether host (no port) is localhost or a loopback IP;
// an empty host (all interfaces) is not.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// providerURL is httpURL for a provider's API: https only, since the
// client secret, the API key and the card data travel there; plain http
// only to a loopback host (a local fake or proxy).
func providerURL(p *problems, name, v, example string) string {
	u, err := url.Parse(v)
	if err == nil && u.Scheme == "http" && u.User == nil && u.Hostname() != "" && !isLoopback(u.Hostname()) {
		p.add(name, "%q must be an https:// URL (http:// is allowed for loopback hosts only): it would send the credentials and card data in clear; use e.g. %q", v, example)
		return strings.TrimRight(v, "/")
	}
	return httpURL(p, name, v, example)
}

// httpURL checks that v is an absolute http or https URL without
// credentials, query or fragment, and returns it without trailing slashes.
func httpURL(p *problems, name, v, example string) string {
	fix := fmt.Sprintf("use an absolute http or https URL such as %q", example)
	u, err := url.Parse(v)
	if err != nil {
		p.add(name, "is not a valid URL; %s", fix) // the parse error would echo the value
		return v
	}
	switch {
	case u.User != nil:
		p.add(name, "must not contain a user name or password; %s", fix) // nor echo them
	case u.Scheme != "http" && u.Scheme != "https":
		p.add(name, "%q is not an absolute http or https URL; %s", v, fix)
	case u.Host == "" || u.Hostname() == "":
		p.add(name, "%q has no host; %s", v, fix)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		p.add(name, "%q must not have a query or fragment; %s", v, fix)
	}
	return strings.TrimRight(v, "/")
}

// database parses REGISTRAR_DATABASE_URL. Its errors never echo the value:
// a PostgreSQL URL may hold a password.
func database(p *problems, name, v string) (Database, string) {
	fix := fmt.Sprintf("use sqlite:PATH (e.g. %s) or %s", sqliteExample, postgresExample)
	scheme, rest, hasColon := strings.Cut(v, ":")
	switch {
	case !hasColon || !isScheme(scheme):
		p.add(name, "is neither a sqlite: nor a postgres:// URL; %s", fix)
	case scheme == "sqlite":
		switch {
		case rest == "":
			p.add(name, "sqlite: needs a file path; use e.g. %s", sqliteExample)
		case strings.HasPrefix(rest, "//"):
			p.add(name, `write sqlite:PATH without "//"; use e.g. %s or sqlite:/var/lib/registrar/registrar.db`, sqliteExample)
		default:
			return Database{Engine: EngineSQLite, Path: rest}, filepath.Dir(rest)
		}
	case scheme == "postgres" || scheme == "postgresql":
		if !strings.HasPrefix(rest, "//") {
			p.add(name, "a PostgreSQL URL starts with %s://; use %s", scheme, postgresExample)
			break
		}
		if _, err := url.Parse(v); err != nil {
			// Do not wrap err: it quotes the URL, password included.
			p.add(name, "is not a valid PostgreSQL URL; use %s and percent-encode special characters in the password", postgresExample)
			break
		}
		return Database{Engine: EnginePostgres, URL: v}, postgresDataDir
	default:
		p.add(name, "unsupported scheme %q; %s", scheme, fix)
	}
	return Database{}, ""
}

// isScheme reports whether s is a URL scheme per RFC 3986.
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}

func roles(p *problems, name, v string) Roles {
	const fix = "use web, worker, or web,worker"
	var r Roles
	for part := range strings.SplitSeq(v, ",") {
		switch part = strings.TrimSpace(part); part {
		case "":
		case "web":
			r.Web = true
		case "worker":
			r.Worker = true
		default:
			p.add(name, "unknown role %q; %s", part, fix)
		}
	}
	if !r.Web && !r.Worker && strings.Trim(v, ", \t") == "" {
		p.add(name, "names no role; %s", fix)
	}
	return r
}

// choice checks that v is one of options.
func choice(p *problems, name, v string, options ...string) string {
	for _, o := range options {
		if v == o {
			return v
		}
	}
	p.add(name, "unknown value %q; use %s", v, orList(options))
	return v
}

// orList renders options as "a or b" or "a, b, or c".
func orList(options []string) string {
	switch len(options) {
	case 1:
		return options[0]
	case 2:
		return options[0] + " or " + options[1]
	}
	return strings.Join(options[:len(options)-1], ", ") + ", or " + options[len(options)-1]
}

// checkSMTPURL validates SMTP_URL without ever echoing it: it holds a
// password.
func checkSMTPURL(p *problems, name, v string) {
	u, err := url.Parse(v)
	if err != nil {
		p.add(name, "is not a valid URL; use %s, and percent-encode special characters in the password", smtpExample)
		return
	}
	switch {
	case u.Scheme != "smtp" && u.Scheme != "smtps":
		if isScheme(u.Scheme) {
			p.add(name, "scheme %q is not smtp or smtps; use %s", u.Scheme, smtpExample)
		} else {
			p.add(name, "scheme is not smtp or smtps; use %s", smtpExample)
		}
	case u.Hostname() == "":
		p.add(name, "has no host; use %s", smtpExample)
	case u.Port() == "":
		p.add(name, "has no port; use %s", smtpExample)
	default:
		if n, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || n == 0 {
			p.add(name, "port %q is not a number from 1 to 65535; use %s", u.Port(), smtpExample)
		}
	}
}

func mailchimp(p *problems, key, listID, base string) Mailchimp {
	m := Mailchimp{APIKey: key, ListID: listID}
	if listID != "" && !isAlnum(listID) {
		p.add("MAILCHIMP_LIST_ID", "%q is not a Mailchimp audience ID (letters and digits only); use the audience ID from Audience > Settings in Mailchimp", listID)
	}
	if base != "" {
		m.APIBase = providerURL(p, "MAILCHIMP_API_BASE", base, "https://us21.api.mailchimp.com/3.0")
		return m
	}
	if key == "" {
		return m
	}
	i := strings.LastIndexByte(key, '-')
	dc := key[i+1:]
	if i < 0 || !isAlnum(dc) || strings.ToLower(dc) != dc {
		// Never echo the key.
		p.add("MAILCHIMP_API_KEY", `has no data-center suffix such as "-us21"; copy the whole key from Mailchimp, or set MAILCHIMP_API_BASE`)
		return m
	}
	m.APIBase = "https://" + dc + ".api.mailchimp.com/3.0"
	return m
}

// isAlnum reports whether s is a non-empty run of ASCII letters and digits.
func isAlnum(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// LogValue implements slog.LogValuer. Every secret is masked as "***"; an
// unset secret shows as "".
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("base_url", maskURL(c.BaseURL)),
		slog.Group("database",
			slog.String("engine", string(c.Database.Engine)),
			slog.String("path", c.Database.Path),
			slog.String("url", maskURL(c.Database.URL))),
		slog.String("event_file", c.EventFile),
		slog.Group("roles", slog.Bool("web", c.Roles.Web), slog.Bool("worker", c.Roles.Worker)),
		slog.String("payment", c.Payment),
		slog.Group("paypal",
			slog.String("client_id", c.PayPal.ClientID),
			slog.String("client_secret", mask(c.PayPal.ClientSecret)),
			slog.String("api_base", maskURL(c.PayPal.APIBase))),
		slog.String("email", c.Email),
		slog.String("smtp_url", maskURL(c.SMTPURL)),
		slog.Group("sendgrid",
			slog.String("api_key", mask(c.SendGrid.APIKey)),
			slog.String("api_base", maskURL(c.SendGrid.APIBase))),
		slog.String("mailing_list", c.MailingList),
		slog.Group("mailchimp",
			slog.String("api_key", mask(c.Mailchimp.APIKey)),
			slog.String("list_id", c.Mailchimp.ListID),
			slog.Bool("double_opt_in", c.Mailchimp.DoubleOptIn),
			slog.String("api_base", maskURL(c.Mailchimp.APIBase))),
		slog.String("admin_email", c.AdminEmail),
		slog.String("admin_password", mask(c.AdminPassword)),
		slog.String("notify_email", strings.Join(c.NotifyEmails, ",")),
		slog.String("data_dir", c.DataDir),
		slog.Int("rate_limit", c.RateLimit),
		slog.Int("max_conns_per_client", c.MaxConnsPerClient),
		slog.Int("retention_days", c.RetentionDays),
		slog.String("metrics_addr", cmp.Or(c.MetricsAddr, "off")),
		slog.String("metrics_token", mask(c.MetricsToken)),
		slog.Duration("job_timeout", c.JobTimeout),
	)
}

// String renders the configuration with its secrets masked, as LogValue
// does, so that printing a Config by mistake leaks nothing.
func (c Config) String() string {
	var b strings.Builder
	writeGroup(&b, "", c.LogValue().Group())
	return b.String()
}

func writeGroup(b *strings.Builder, prefix string, attrs []slog.Attr) {
	for _, a := range attrs {
		if a.Value.Kind() == slog.KindGroup {
			writeGroup(b, prefix+a.Key+".", a.Value.Group())
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(b, "%s%s=%q", prefix, a.Key, a.Value.String())
	}
}

const masked = "***"

func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return masked
}

// maskURL masks the password of a URL and the values of query parameters
// that look secret (password, sslpassword, token, key, ...). A URL that does
// not parse is masked whole.
func maskURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return masked
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for i, param := range params {
			k, _, _ := strings.Cut(param, "=")
			name, err := url.QueryUnescape(k)
			if err != nil || secretParam(name) {
				params[i] = k + "=" + masked
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	if _, has := u.User.Password(); has {
		// Redacted writes the password as "xxxxx"; user names escape ':'
		// and '@', so the first ":xxxxx@" is the password.
		return strings.Replace(u.Redacted(), ":xxxxx@", ":"+masked+"@", 1)
	}
	return u.String()
}

func secretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range []string{"pass", "secret", "token", "key", "auth", "credential"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}
