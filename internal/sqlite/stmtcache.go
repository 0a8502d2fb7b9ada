package sqlite

import (
	"container/list"
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"
)

// SQLite compiles every statement before running it, and for the short
// statements of the hot paths (River's job updates, the registration writes)
// compiling costs more than running: a profile of a launch burst spent 41%
// of the process's CPU in SQLite's parser. database/sql prepares a statement
// anew for every ExecContext and QueryContext on a connection, so each
// connection here keeps the statements it has compiled, keyed by their text,
// and runs them again with new arguments — as pgx does on PostgreSQL. The
// cache is per connection (a compiled statement belongs to one), bounded,
// and a statement still in use (its rows open) is not shared.

// stmtCacheSize is how many compiled statements one connection keeps.
// registrar and River together run about a hundred distinct statements.
const stmtCacheSize = 256

// connector opens connections of the modernc driver wrapped in a statement
// cache.
type connector struct {
	driver driver.Driver
	dsn    string
	size   int // statements kept per connection; 0 means stmtCacheSize
}

func (c connector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.driver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	size := c.size
	if size == 0 {
		size = stmtCacheSize
	}
	return newCachingConn(conn, size)
}

func (c connector) Driver() driver.Driver { return c.driver }

// conn is the interface of the modernc connection that the cache relies on.
type conn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

// cachingConn is a connection that keeps its compiled statements.
type cachingConn struct {
	conn
	size  int
	stmts map[string]*list.Element // of *cachedStmt
	lru   list.List                // front: most recently used
}

type cachedStmt struct {
	query string
	stmt  driver.Stmt
	busy  bool // rows of this statement are open
}

func newCachingConn(c driver.Conn, size int) (*cachingConn, error) {
	full, ok := c.(conn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("sqlite driver connection %T lacks context methods", c)
	}
	return &cachingConn{conn: full, size: size, stmts: make(map[string]*list.Element)}, nil
}

// stmt returns the compiled statement of query, compiling it on first use;
// nil when its statement is in use. (The driver compiles a script of several
// statements step by step on every run, cached or not; scripts are rare and
// the cache is bounded, so they are not told apart.)
func (c *cachingConn) stmt(ctx context.Context, query string) (*cachedStmt, error) {
	if e, ok := c.stmts[query]; ok {
		cs := e.Value.(*cachedStmt)
		if cs.busy {
			return nil, nil
		}
		c.lru.MoveToFront(e)
		return cs, nil
	}
	st, err := c.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	cs := &cachedStmt{query: query, stmt: st}
	c.stmts[query] = c.lru.PushFront(cs)
	for c.lru.Len() > c.size {
		if err := c.evict(c.lru.Back()); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// evict closes an idle statement; a busy one moves to the front and is
// evicted later.
func (c *cachingConn) evict(e *list.Element) error {
	cs := e.Value.(*cachedStmt)
	if cs.busy {
		c.lru.MoveToFront(e)
		return nil
	}
	c.lru.Remove(e)
	delete(c.stmts, cs.query)
	return cs.stmt.Close()
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	cs, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.conn.ExecContext(ctx, query, args)
	}
	return cs.stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	cs, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return c.conn.QueryContext(ctx, query, args)
	}
	rows, err := cs.stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	cs.busy = true
	return &cachedRows{Rows: rows, stmt: cs}, nil
}

// Close closes the cached statements, then the connection.
func (c *cachingConn) Close() error {
	var errs []error
	for e := c.lru.Front(); e != nil; e = e.Next() {
		errs = append(errs, e.Value.(*cachedStmt).stmt.Close())
	}
	c.lru.Init()
	clear(c.stmts)
	errs = append(errs, c.conn.Close())
	return errors.Join(errs...)
}

// cachedRows frees its statement for the next run when closed.
type cachedRows struct {
	driver.Rows
	stmt *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close()
	r.stmt.busy = false
	return err
}

// The column-type methods of the driver's rows, for sql.Rows.ColumnTypes.

func (r *cachedRows) ColumnTypeDatabaseTypeName(i int) string {
	if t, ok := r.Rows.(driver.RowsColumnTypeDatabaseTypeName); ok {
		return t.ColumnTypeDatabaseTypeName(i)
	}
	return ""
}

func (r *cachedRows) ColumnTypeScanType(i int) reflect.Type {
	if t, ok := r.Rows.(driver.RowsColumnTypeScanType); ok {
		return t.ColumnTypeScanType(i)
	}
	return reflect.TypeFor[any]()
}

func (r *cachedRows) ColumnTypeNullable(i int) (nullable, ok bool) {
	if t, ok := r.Rows.(driver.RowsColumnTypeNullable); ok {
		return t.ColumnTypeNullable(i)
	}
	return false, false
}
