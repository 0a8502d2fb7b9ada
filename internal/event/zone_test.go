package event

import (
	"testing"
	"time"
)

func TestZoneName(t *testing.T) {
	t.Parallel()
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2027, 3, 1, 10, 0, 0, 0, berlin), "CET"},
		{time.Date(2027, 3, 1, 10, 0, 0, 0, time.FixedZone("", 3600)), "UTC+01:00"},
		{time.Date(2027, 3, 1, 10, 0, 0, 0, time.FixedZone("", -(9*3600+1800))), "UTC-09:30"},
		{time.Date(2027, 3, 1, 10, 0, 0, 0, time.FixedZone("", 0)), "UTC"},
		{time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC), "UTC"},
		{time.Date(2027, 3, 1, 10, 0, 0, 0, time.Local).In(time.FixedZone("", 7200)), "UTC+02:00"},
	}
	for _, tt := range tests {
		if got := ZoneName(tt.t); got != tt.want {
			t.Errorf("ZoneName(%s) = %q; want %q", tt.t, got, tt.want)
		}
	}
}
