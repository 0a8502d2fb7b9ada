package config

import (
	"net/url"
	"strings"
)

// Secrets returns every secret value of the configuration, as the log
// redactor searches for them: the provider keys, the admin password, the
// metrics token, and the passwords and secret-looking query parameters
// (sslpassword, token, key, ...) of the database and SMTP URLs, both decoded
// and as written in the URL. A secret added to Config is added here too, as
// it is masked in LogValue.
func (c Config) Secrets() []string {
	var out []string
	add := func(s ...string) {
		for _, v := range s {
			if v != "" {
				out = append(out, v)
			}
		}
	}
	add(c.PayPal.ClientSecret, c.SendGrid.APIKey, c.Mailchimp.APIKey, c.AdminPassword, c.MetricsToken)
	add(urlSecrets(c.Database.URL)...)
	add(urlSecrets(c.SMTPURL)...)
	return out
}

// urlSecrets returns the password of a URL and the values of its secret
// query parameters, decoded and as written.
func urlSecrets(s string) []string {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil
	}
	var out []string
	if pw, ok := u.User.Password(); ok {
		_, raw, _ := strings.Cut(u.User.String(), ":")
		out = append(out, pw, raw)
	}
	for param := range strings.SplitSeq(u.RawQuery, "&") {
		k, raw, _ := strings.Cut(param, "=")
		name, err := url.QueryUnescape(k)
		if err != nil || !secretParam(name) {
			continue
		}
		out = append(out, raw)
		if v, err := url.QueryUnescape(raw); err == nil {
			out = append(out, v)
		}
	}
	return out
}
