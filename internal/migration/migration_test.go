package migration

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	good := fstest.MapFS{
		"m/0002_more.sql": {Data: []byte("B")},
		"m/0001_init.sql": {Data: []byte("A")},
		"m/0010_late.sql": {Data: []byte("C")},
	}
	ms, err := Load(good, "m")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name+"="+m.SQL)
	}
	if strings.Join(got, ",") != "0001_init.sql=A,0002_more.sql=B,0010_late.sql=C" || Latest(ms) != 10 {
		t.Errorf("Load = %v, latest %d", got, Latest(ms))
	}
	bad := map[string]fstest.MapFS{
		"no number":  {"m/init.sql": {}},
		"zero":       {"m/0000_x.sql": {}},
		"duplicate":  {"m/0001_a.sql": {}, "m/01_b.sql": {}},
		"empty":      {"other/0001_a.sql": {}},
		"not a dash": {"m/12ab_x.sql": {}},
	}
	for name, fsys := range bad {
		if _, err := Load(fsys, "m"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if Latest(nil) != 0 {
		t.Error("Latest(nil) != 0")
	}
}
