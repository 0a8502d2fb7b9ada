package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	modernc "modernc.org/sqlite"
)

// openCached opens a one-connection database whose connection keeps at most
// size statements, and returns it with a function reading the connection's
// cached statement texts (most recent first).
func openCached(t *testing.T, size int) (*sql.DB, func() []string) {
	t.Helper()
	dsn := "file:" + filepath.Join(t.TempDir(), "cache.db") + "?_pragma=journal_mode(WAL)&_txlock=immediate"
	db := sql.OpenDB(connector{driver: &modernc.Driver{}, dsn: dsn, size: size})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(createT); err != nil {
		t.Fatal(err)
	}
	cached := func() []string {
		var qs []string
		conn, err := db.Conn(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		err = conn.Raw(func(dc any) error {
			c := dc.(*cachingConn)
			for e := c.lru.Front(); e != nil; e = e.Next() {
				qs = append(qs, e.Value.(*cachedStmt).query)
			}
			if len(qs) != len(c.stmts) {
				t.Errorf("list holds %d statements, map %d", len(qs), len(c.stmts))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return qs
	}
	return db, cached
}

const (
	createT = `CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`
	insertT = `INSERT INTO t (id, v) VALUES (?, ?)`
	selectT = `SELECT id, v FROM t ORDER BY id`
	countT  = `SELECT count(*) FROM t WHERE v = ?`
)

func TestStmtCacheRunsAStatementAgainWithNewArguments(t *testing.T) {
	t.Parallel()
	db, cached := openCached(t, 8)
	for i := range 5 {
		if _, err := db.Exec(insertT, i, strings.Repeat("x", i)); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	for _, v := range []string{"xx", "nope", "xx"} {
		if err := db.QueryRow(countT, v).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if n != 1 {
		t.Errorf("count of xx = %d, want 1", n)
	}
	got := cached()
	want := []string{countT, insertT, createT}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("cached %q, want %q", got, want)
	}
}

func TestStmtCacheNestedUseOfTheSameStatement(t *testing.T) {
	t.Parallel()
	db, _ := openCached(t, 8)
	for i := range 3 {
		if _, err := db.Exec(insertT, i, "v"); err != nil {
			t.Fatal(err)
		}
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	outer, err := tx.Query(selectT)
	if err != nil {
		t.Fatal(err)
	}
	pairs := 0
	for outer.Next() {
		// The same text while its statement is still stepping: it must
		// run on a statement of its own, not reset the outer one.
		inner, err := tx.Query(selectT)
		if err != nil {
			t.Fatal(err)
		}
		for inner.Next() {
			pairs++
		}
		if err := inner.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := outer.Err(); err != nil {
		t.Fatal(err)
	}
	outer.Close()
	if pairs != 9 {
		t.Errorf("nested iteration saw %d pairs, want 9", pairs)
	}
}

func TestStmtCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	db, cached := openCached(t, 2)
	if _, err := db.Exec(insertT, 1, "a"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(countT, "a").Scan(&n); err != nil {
		t.Fatal(err)
	}
	// Open rows keep selectT busy: filling the cache must not evict it.
	rows, err := db.Query(selectT)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatal("no row")
	}
	var id int
	var v string
	if err := rows.Scan(&id, &v); err != nil || id != 1 || v != "a" {
		t.Fatalf("scan = %d %q %v", id, v, err)
	}
	rows.Close()
	if got := cached(); strings.Join(got, "|") != selectT+"|"+countT {
		t.Errorf("cached %q, want [select count]: the insert was least recently used", got)
	}
	if _, err := db.Exec(insertT, 2, "b"); err != nil {
		t.Fatal(err)
	}
	if got := cached(); strings.Join(got, "|") != insertT+"|"+selectT {
		t.Errorf("cached %q, want [insert select]", got)
	}
}

func TestStmtCacheScriptsAndFailedStatements(t *testing.T) {
	t.Parallel()
	db, cached := openCached(t, 8)
	// A script (here with a ; in a comment too) runs every statement on
	// every run.
	script := `INSERT INTO t (v) VALUES ('a'); -- one; then
		INSERT INTO t (v) VALUES ('b');`
	var n int
	for run := 1; run <= 2; run++ {
		if _, err := db.Exec(script); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil || n != 2*run {
			t.Fatalf("count after run %d of the script = %d, %v; want %d", run, n, err, 2*run)
		}
	}
	if _, err := db.Exec(`DELETE FROM t`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(insertT, 1, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO missing (id) VALUES (?)`, 1); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Errorf("insert into a missing table: err %v", err)
	}
	// A constraint failure leaves the statement usable.
	if _, err := db.Exec(insertT, 1, "dup"); err == nil {
		t.Error("duplicate id inserted")
	}
	if _, err := db.Exec(insertT, 3, "c"); err != nil {
		t.Errorf("insert after a failed run of the same statement: %v", err)
	}
	got := cached()
	want := []string{insertT, `DELETE FROM t`, `SELECT count(*) FROM t`, script, createT}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("cached %q, want %q", got, want)
	}
}

func TestStmtCacheRollbackAndCancel(t *testing.T) {
	t.Parallel()
	db, _ := openCached(t, 8)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(insertT, 1, "gone"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.ExecContext(ctx, insertT, 2, "never"); err == nil {
		t.Error("insert with a cancelled context succeeded")
	}
	if _, err := db.Exec(insertT, 3, "kept"); err != nil {
		t.Fatal(err)
	}
	var vs []string
	rows, err := db.Query(selectT)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int
		var v string
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	rows.Close()
	if strings.Join(vs, ",") != "kept" {
		t.Errorf("rows %q, want only kept", vs)
	}
}
