package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/registrar/registrar/internal/buildinfo"
)

// TestVersionCommand: each spelling prints the one version line, with
// nothing else and without reading the configuration (an invalid one
// does not matter).
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	want := "registrar " + buildinfo.Read().String() + "\n"
	bad := env{"REGISTRAR_ADDR": "nonsense"}
	for _, arg := range []string{"version", "-version", "--version"} {
		var out, errOut bytes.Buffer
		if err := run(context.Background(), []string{arg}, bad.get, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("registrar %s: %v", arg, err)
		}
		if out.String() != want || errOut.Len() != 0 {
			t.Errorf("registrar %s printed %q (stderr %q), want %q", arg, out.String(), errOut.String(), want)
		}
	}
}

// TestStartLogNamesBuild: the start-up line carries the version, the
// revision and the commit time of the build as attributes of their own.
func TestStartLogNamesBuild(t *testing.T) {
	t.Parallel()
	s := startRun(t, baseEnv(t.TempDir()))
	s.stop(t)
	b := buildinfo.Read()
	line := regexp.MustCompile(`(?m)^.*msg="starting registrar".*$`).FindString(s.logs.String())
	if line == "" {
		t.Fatalf("no start-up line in the log:\n%s", s.logs)
	}
	for _, attr := range []string{"version=" + b.Version, "revision=" + quoteEmpty(b.RevisionLabel()), "built=" + quoteEmpty(b.Time)} {
		if !strings.Contains(line, " "+attr+" ") {
			t.Errorf("start-up line lacks %s:\n%s", attr, line)
		}
	}
}

// quoteEmpty is how the text handler writes a value: "" for an empty one.
func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
