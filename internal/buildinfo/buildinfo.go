// Package buildinfo describes the running binary: its module version and
// the version-control revision and commit time the go command stamped into
// it (go build records them when it builds inside a Git checkout; go run
// and go test do not).
package buildinfo

import (
	"runtime/debug"
	"strings"
)

// Info is what a binary knows about how it was built.
type Info struct {
	// Version is the main module's version ("v1.2.3", a pseudo-version, or
	// "(devel)" when the go command knew none).
	Version string
	// Revision is the commit the binary was built from, "" when unknown.
	Revision string
	// Time is the commit's time as the go command recorded it (RFC 3339,
	// UTC), "" when unknown.
	Time string
	// Modified reports that the working tree had uncommitted changes.
	Modified bool
}

// devel is the version of a build that has none.
const devel = "(devel)"

// shortRevision is how many leading characters of a revision are printed.
const shortRevision = 12

// Read returns the running binary's Info.
func Read() Info {
	info, _ := debug.ReadBuildInfo()
	return From(info)
}

// From returns the Info recorded in info; a nil info (a binary built
// without module support) gives a "(devel)" build with no revision.
func From(info *debug.BuildInfo) Info {
	out := Info{Version: devel}
	if info == nil {
		return out
	}
	if v := info.Main.Version; v != "" {
		out.Version = v
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			out.Revision = s.Value
		case "vcs.time":
			out.Time = s.Value
		case "vcs.modified":
			out.Modified = s.Value == "true"
		}
	}
	return out
}

// RevisionLabel is the revision as logged: the full commit id, with
// "-dirty" when the working tree was modified; "" when unknown.
func (i Info) RevisionLabel() string {
	if i.Revision == "" {
		return ""
	}
	if i.Modified {
		return i.Revision + "-dirty"
	}
	return i.Revision
}

// String is the one line `registrar version` prints after the program's
// name: the version, then the revision (its first 12 characters, with
// "-dirty" when the tree was modified) and the commit's time:
// "v1.2.3 (revision 9a0fe15c4e2b, 2026-12-03T17:40:00Z)". A build that
// recorded neither gives the version alone.
func (i Info) String() string {
	var b strings.Builder
	b.WriteString(i.Version)
	if i.Revision == "" && i.Time == "" {
		return b.String()
	}
	b.WriteString(" (")
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > shortRevision {
			rev = rev[:shortRevision]
		}
		b.WriteString("revision " + rev)
		if i.Modified {
			b.WriteString("-dirty")
		}
	}
	if i.Time != "" {
		if i.Revision != "" {
			b.WriteString(", ")
		}
		b.WriteString(i.Time)
	}
	b.WriteString(")")
	return b.String()
}
