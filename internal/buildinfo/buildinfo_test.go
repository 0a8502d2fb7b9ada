package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFrom(t *testing.T) {
	t.Parallel()
	const rev = "9a0fe15c4e2b7d1f0a3c5e7b9d1f3a5c7e9b1d3f"
	settings := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for _, tc := range []struct {
		name         string
		info         *debug.BuildInfo
		line, logRev string
	}{
		{"no build info", nil, "(devel)", ""},
		{"no version, no vcs", &debug.BuildInfo{}, "(devel)", ""},
		{"devel with vcs", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs", "git", "vcs.revision", rev, "vcs.time", "2026-12-03T17:40:00Z", "vcs.modified", "false")},
			"(devel) (revision 9a0fe15c4e2b, 2026-12-03T17:40:00Z)", rev},
		{"tagged", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"},
			Settings: settings("vcs.revision", rev, "vcs.time", "2026-12-03T17:40:00Z")},
			"v1.2.3 (revision 9a0fe15c4e2b, 2026-12-03T17:40:00Z)", rev},
		{"modified tree", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.4-0.20261203174000-9a0fe15c4e2b+dirty"},
			Settings: settings("vcs.revision", rev, "vcs.time", "2026-12-03T17:40:00Z", "vcs.modified", "true")},
			"v1.2.4-0.20261203174000-9a0fe15c4e2b+dirty (revision 9a0fe15c4e2b-dirty, 2026-12-03T17:40:00Z)", rev + "-dirty"},
		{"short revision, no time", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"},
			Settings: settings("vcs.revision", "abc123")},
			"v0.1.0 (revision abc123)", "abc123"},
		{"time only", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"},
			Settings: settings("vcs.time", "2026-12-03T17:40:00Z")},
			"v0.1.0 (2026-12-03T17:40:00Z)", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := From(tc.info)
			if s := got.String(); s != tc.line {
				t.Errorf("String() = %q, want %q", s, tc.line)
			}
			if r := got.RevisionLabel(); r != tc.logRev {
				t.Errorf("RevisionLabel() = %q, want %q", r, tc.logRev)
			}
		})
	}
}

// TestRead reads the test binary's own build information.
func TestRead(t *testing.T) {
	t.Parallel()
	info, ok := debug.ReadBuildInfo()
	if !ok {
		t.Skip("binary built without module support")
	}
	if got, want := Read(), From(info); got != want {
		t.Errorf("Read() = %+v, From(debug.ReadBuildInfo()) = %+v", got, want)
	}
}
