package event

import (
	"fmt"
	"time"
)

// ZoneName names t's time zone for people: its abbreviation when it has a
// zone of its own (CEST), else its offset from UTC (UTC+02:00), as for a
// time read with a numeric offset. A time in the server's local zone is
// named by its offset too: parsing a numeric offset that happens to match
// the server's zone gives the server's abbreviation, and the pages and
// messages must read the same on every server.
func ZoneName(t time.Time) string {
	name, offset := t.Zone()
	if t.Location() != time.Local && name != "" && name[0] != '+' && name[0] != '-' {
		return name
	}
	if offset == 0 {
		return "UTC"
	}
	sign := '+'
	if offset < 0 {
		sign, offset = '-', -offset
	}
	return fmt.Sprintf("UTC%c%02d:%02d", sign, offset/3600, offset%3600/60)
}
