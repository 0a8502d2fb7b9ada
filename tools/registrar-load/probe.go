package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the database/sql driver "pgx"
	_ "modernc.org/sqlite"             // the database/sql driver "sqlite"

	"github.com/registrar/registrar/internal/payment"
	"github.com/registrar/registrar/internal/registration"
)

// probe is the bare-limit probe: the least a registration endpoint must do
// on this machine — decode the same JSON body, wait as long as the payment
// call, and commit one row per request to the same engine with the same
// durability (SQLite: WAL, synchronous=FULL, one writer connection;
// PostgreSQL: synchronous commit) — so registrar's throughput can be read as
// a share of what the machine can do at all.
type probe struct {
	db     *sql.DB
	engine string
	table  string
	insert string
	wait   time.Duration
	batch  int
	writes chan *probeWrite
	log    *slog.Logger
}

type probeRow struct {
	id, ticket, first, last, email, company string
	newsletter                              bool
	brand, last4, created                   string
}

type probeWrite struct {
	row  probeRow
	done chan error
}

// openProbe opens the probe's database: a new SQLite file in dir, or a new
// table in the PostgreSQL database at pgURL.
func openProbe(ctx context.Context, dir, pgURL string, batch, conns int, wait time.Duration, log *slog.Logger) (*probe, error) {
	p := &probe{wait: wait, batch: batch, log: log}
	cols := "(id, ticket, first_name, last_name, email, company, newsletter, card_brand, card_last4, created_at)"
	if pgURL == "" {
		path := filepath.Join(dir, "probe.db")
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(path + suffix)
		}
		q := url.Values{}
		for _, pragma := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "foreign_keys(1)", "synchronous(FULL)"} {
			q.Add("_pragma", pragma)
		}
		q.Add("_txlock", "immediate")
		db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("probe database: %w", err)
		}
		db.SetMaxOpenConns(1) // one writer, as registrar
		db.SetMaxIdleConns(1)
		p.db, p.engine, p.table = db, "sqlite", "probe_registrations"
		p.insert = `INSERT INTO probe_registrations ` + cols + ` VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
		_, err = db.ExecContext(ctx, `CREATE TABLE probe_registrations (
			id TEXT NOT NULL PRIMARY KEY, ticket TEXT NOT NULL, first_name TEXT NOT NULL, last_name TEXT NOT NULL,
			email TEXT NOT NULL, company TEXT NOT NULL, newsletter INTEGER NOT NULL, card_brand TEXT NOT NULL,
			card_last4 TEXT NOT NULL, created_at TEXT NOT NULL) STRICT`)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("probe table: %w", err)
		}
	} else {
		db, err := sql.Open("pgx", pgURL)
		if err != nil {
			return nil, fmt.Errorf("probe database: %w", err)
		}
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			db.Close()
			return nil, err
		}
		p.db, p.engine, p.table = db, "postgres", fmt.Sprintf("load_probe_%x", b)
		p.insert = `INSERT INTO ` + p.table + ` ` + cols + ` VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`
		_, err = db.ExecContext(ctx, `CREATE TABLE `+p.table+` (
			id text NOT NULL PRIMARY KEY, ticket text NOT NULL, first_name text NOT NULL, last_name text NOT NULL,
			email text NOT NULL, company text NOT NULL, newsletter boolean NOT NULL, card_brand text NOT NULL,
			card_last4 text NOT NULL, created_at timestamptz NOT NULL)`)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("probe table: %w", err)
		}
	}
	if batch > 1 {
		p.writes = make(chan *probeWrite, batch*4)
		go p.writer()
	}
	return p, nil
}

// close stops the writer and drops the PostgreSQL table.
func (p *probe) close() {
	if p.writes != nil {
		close(p.writes)
	}
	if p.engine == "postgres" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := p.db.ExecContext(ctx, `DROP TABLE IF EXISTS `+p.table); err != nil {
			p.log.Warn("dropping the probe table", "table", p.table, "err", err)
		}
	}
	p.db.Close()
}

func (p *probe) args(r probeRow) []any {
	created := any(r.created)
	if p.engine == "postgres" {
		t, _ := time.Parse(time.RFC3339Nano, r.created)
		created = t
	}
	newsletter := any(r.newsletter)
	if p.engine == "sqlite" {
		newsletter = 0
		if r.newsletter {
			newsletter = 1
		}
	}
	return []any{r.id, r.ticket, r.first, r.last, r.email, r.company, newsletter, r.brand, r.last4, created}
}

// commit writes rows in one transaction.
func (p *probe) commit(ctx context.Context, rows ...probeRow) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, r := range rows {
		if _, err := tx.ExecContext(ctx, p.insert, p.args(r)...); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// writer group-commits: it takes the requests waiting (up to batch) and
// commits them in one transaction.
func (p *probe) writer() {
	ctx := context.Background()
	for w := range p.writes {
		group := []*probeWrite{w}
	fill:
		for len(group) < p.batch {
			select {
			case w, ok := <-p.writes:
				if !ok {
					break fill
				}
				group = append(group, w)
			default:
				break fill
			}
		}
		rows := make([]probeRow, len(group))
		for i, w := range group {
			rows[i] = w.row
		}
		err := p.commit(ctx, rows...)
		for _, w := range group {
			w.done <- err
		}
	}
}

func probeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// handler serves POST /api/registrations.
func (p *probe) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/registrations", func(w http.ResponseWriter, r *http.Request) {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			probeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send JSON")
			return
		}
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			probeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "too large")
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		var req registration.Request
		if err := dec.Decode(&req); err != nil {
			probeError(w, http.StatusBadRequest, "invalid_request", "not a registration")
			return
		}
		id, err := registration.NewID()
		if err != nil {
			probeError(w, http.StatusInternalServerError, "internal", "id")
			return
		}
		row := probeRow{id: id, ticket: req.Ticket, first: req.Attendee.FirstName, last: req.Attendee.LastName,
			email: req.Attendee.Email, company: req.Attendee.Company, newsletter: req.Newsletter,
			created: time.Now().UTC().Format(time.RFC3339Nano)}
		if req.Billing != nil {
			n := payment.NormalizeNumber(req.Billing.Card.Number)
			row.brand, row.last4 = payment.Brand(n), payment.Last4(n)
		}
		if p.wait > 0 {
			select {
			case <-time.After(p.wait): // the payment call
			case <-r.Context().Done():
				return
			}
		}
		if p.writes != nil {
			done := make(chan error, 1)
			p.writes <- &probeWrite{row: row, done: done}
			err = <-done
		} else {
			err = p.commit(r.Context(), row)
		}
		if err != nil {
			p.log.Warn("probe commit failed", "err", err)
			probeError(w, http.StatusInternalServerError, "internal", "commit failed")
			return
		}
		w.Header().Set("Location", "/api/registrations/"+id)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "paid", "status_url": "http://127.0.0.1/registrations/" + id})
	})
	return mux
}

// rows counts the committed rows.
func (p *probe) rows(ctx context.Context) (int, error) {
	var n int
	err := p.db.QueryRowContext(ctx, `SELECT count(*) FROM `+p.table).Scan(&n)
	return n, err
}

// measureProbe runs the attack against the probe, in this process.
func measureProbe(ctx context.Context, o options, dir string, log *slog.Logger) (*Side, error) {
	p, err := openProbe(ctx, dir, o.database, o.probeBatch, o.probeConns, o.probeWait, log)
	if err != nil {
		return nil, err
	}
	defer p.close()
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: p.handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	log.Info("probe started", "url", base, "engine", p.engine, "batch", p.batch, "wait", p.wait)

	cpu0 := selfCPU()
	out, err := attack(ctx, o, base, "probe", attackHooks{})
	if err != nil {
		return nil, err
	}
	cpu := selfCPU() - cpu0
	side := summarise("probe", base, o, out)
	side.CPUSeconds = cpu.Seconds()
	side.CPUCores = ratio(cpu.Seconds(), out.wall.Seconds())
	side.CPUNote = "probe, load generator and fakes share this process"
	n, err := p.rows(ctx)
	if err != nil {
		return nil, fmt.Errorf("count probe rows: %w", err)
	}
	// A request whose client gave up may still have committed.
	if n < side.Accepted {
		return nil, fmt.Errorf("probe committed %d rows but answered 202 %d times", n, side.Accepted)
	}
	side.CommittedRows = n
	return side, nil
}
