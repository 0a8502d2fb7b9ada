package postgres

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/registrar/registrar/internal/groupcommit"
	"github.com/registrar/registrar/internal/registration"
)

// The registration hot path, set-wise: a batch of StartAttempts, of
// CompleteAttempts or of FailAttempts runs as a few statements over all of
// its attempts (arrays unnested), not a few per attempt. Each statement
// that may wait for a row lock takes its rows in one order (ORDER BY, or a
// locking subquery ordered so), and the statements of a batch follow the
// order of the tables: registrations, idempotency keys, seat holds, ticket
// stock. See Store for why that keeps batches from waiting in a circle.
//
// What the set-wise code would rather not handle — two writes of one batch
// on the same key or attempt where the outcome would depend on their order,
// a completion whose hold was swept and whose seat is gone — makes the
// batch fail with errAlone: each of its writes then runs alone, through the
// per-write functions, in a transaction of its own.

var errAlone = errors.New("batch left to one transaction per write")

// startItem is a StartAttempt in a batch: its attempt, and its result.
type startItem struct {
	a       registration.Attempt
	soldOut registration.Outcome
	replay  *registration.Outcome
	refused error
}

// completeItem is a CompleteAttempt in a batch.
type completeItem struct {
	a       registration.Attempt
	r       registration.Registration
	enqueue registration.EnqueueFunc
}

// failItem is a FailAttempt in a batch.
type failItem struct {
	a   registration.Attempt
	o   *registration.Outcome
	now time.Time
}

type ticketKey struct{ event, ticket string }

func compareTickets(a, b ticketKey) int {
	return cmp.Or(cmp.Compare(a.event, b.event), cmp.Compare(a.ticket, b.ticket))
}

// byTicket groups indexes by ticket, tickets in order, indexes in the order
// given.
func byTicket(n int, ticket func(i int) ticketKey) ([]ticketKey, map[ticketKey][]int) {
	groups := map[ticketKey][]int{}
	var keys []ticketKey
	for i := range n {
		t := ticket(i)
		if _, ok := groups[t]; !ok {
			keys = append(keys, t)
		}
		groups[t] = append(groups[t], i)
	}
	slices.SortFunc(keys, compareTickets)
	return keys, groups
}

// keyRow is an idempotency key as stored.
type keyRow struct {
	hash, state string
	outcome     registration.Outcome
	mine        bool // reserved by this batch
}

// answer is what an attempt with requestHash hears from a key stored as k
// by another attempt: a replay, or the error for a key in use.
func (k keyRow) answer(requestHash string) (*registration.Outcome, error) {
	switch {
	case k.hash != requestHash:
		return nil, registration.ErrKeyReused
	case k.state == "in_progress":
		return nil, registration.ErrKeyInProgress
	}
	o := k.outcome
	return &o, nil
}

// runStarts is a batch of StartAttempts: beginAttempt for many attempts.
// The keys are reserved in one statement; each ticket's seats are taken
// with one conditional UPDATE for all of the ticket's attempts (or, when
// fewer are free, as many as are free, the row locked first); then the
// email addresses are counted, the holds inserted, and the keys of refused
// attempts forgotten or settled, each in one statement.
func runStarts(ctx context.Context, tx *sql.Tx, items []*groupcommit.Item[*startItem]) error {
	for _, it := range items {
		it.Val.replay, it.Val.refused = nil, nil
	}
	going, err := reserveKeys(ctx, tx, items)
	if err != nil {
		return err
	}
	// The holds first: fresh rows, which no one waits for, so that the
	// stock rows, locked next, are held little more than the commit. The
	// holds of refused attempts are deleted again.
	if err := insertHolds(ctx, tx, going); err != nil {
		return err
	}
	tickets, groups := byTicket(len(going), func(i int) ticketKey {
		a := going[i].a
		return ticketKey{a.EventID, a.TicketID}
	})
	var seated []*startItem
	var soldOut []*startItem // refused for good: the sell-out is stored under the key
	var forget []*startItem  // refused for now: the key is forgotten
	for _, t := range tickets {
		g := groups[t]
		granted, final, err := takeSeats(ctx, tx, t, len(g))
		if err != nil {
			return err
		}
		for j, i := range g {
			it := going[i]
			switch {
			case j < granted:
				seated = append(seated, it)
			case final:
				it.refused = registration.ErrSoldOut
				soldOut = append(soldOut, it)
			default:
				it.refused = registration.ErrSeatsHeld
				forget = append(forget, it)
			}
		}
	}
	seated, limited, err := checkEmailLimits(ctx, tx, seated, going)
	if err != nil {
		return err
	}
	if len(limited) > 0 {
		if err := giveSeatsBack(ctx, tx, limited); err != nil {
			return err
		}
		forget = append(forget, limited...)
	}
	refused := append(slices.Clip(forget), soldOut...)
	if len(refused) > 0 {
		ids := make([]string, len(refused))
		for i, v := range refused {
			ids[i] = v.a.ID
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM seat_holds WHERE id = ANY($1::text[])`, ids); err != nil {
			return fmt.Errorf("drop refused holds: %w", err)
		}
	}
	if err := forgetKeys(ctx, tx, forget); err != nil {
		return err
	}
	return settleSoldOut(ctx, tx, soldOut)
}

// reserveKeys reserves the keys of the batch's attempts, in key order, and
// answers those whose key is taken (replay, ErrKeyReused, ErrKeyInProgress).
// It returns the attempts that go on, in the batch's order. Of two attempts
// of the batch with the same key the first reserves it; the second hears
// what it would hear after the first's write.
func reserveKeys(ctx context.Context, tx *sql.Tx, items []*groupcommit.Item[*startItem]) ([]*startItem, error) {
	rows := map[string]keyRow{}
	first := map[string]*startItem{}
	var pending []*startItem // the first attempt of each key not yet reserved nor read
	for _, it := range items {
		if k := it.Val.a.IdempotencyKey; k != "" {
			if _, ok := first[k]; !ok {
				first[k] = it.Val
				pending = append(pending, it.Val)
			}
		}
	}
	slices.SortFunc(pending, func(a, b *startItem) int { return cmp.Compare(a.a.IdempotencyKey, b.a.IdempotencyKey) })
	// A key seen taken can be forgotten before it is read; then reserving
	// it again succeeds. Three rounds need two such races in a row.
	for round := 0; len(pending) > 0; round++ {
		if round == 3 {
			return nil, fmt.Errorf("reserve idempotency key: it keeps changing under us")
		}
		keys, hashes, ids := make([]string, len(pending)), make([]string, len(pending)), make([]string, len(pending))
		times := make([]time.Time, len(pending))
		for i, p := range pending {
			keys[i], hashes[i], ids[i], times[i] = p.a.IdempotencyKey, p.a.RequestHash, p.a.ID, p.a.CreatedAt.UTC()
		}
		res, err := tx.QueryContext(ctx, `INSERT INTO idempotency_keys (key, request_hash, attempt_id, state, created_at, updated_at)
			SELECT u.key, u.hash, u.id, 'in_progress', u.at, u.at
			FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(key, hash, id, at) ORDER BY u.key
			ON CONFLICT (key) DO NOTHING RETURNING key`, keys, hashes, ids, times)
		if err != nil {
			return nil, fmt.Errorf("reserve idempotency keys: %w", err)
		}
		for res.Next() {
			var k string
			if err := res.Scan(&k); err != nil {
				res.Close()
				return nil, fmt.Errorf("reserve idempotency keys: %w", err)
			}
			rows[k] = keyRow{hash: first[k].a.RequestHash, state: "in_progress", mine: true}
		}
		if err := res.Close(); err != nil {
			return nil, fmt.Errorf("reserve idempotency keys: %w", err)
		}
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("reserve idempotency keys: %w", err)
		}
		var taken []string
		for _, k := range keys {
			if _, ok := rows[k]; !ok {
				taken = append(taken, k)
			}
		}
		if len(taken) == 0 {
			break
		}
		if err := readKeys(ctx, tx, taken, rows); err != nil {
			return nil, err
		}
		pending = slices.DeleteFunc(pending, func(p *startItem) bool { _, ok := rows[p.a.IdempotencyKey]; return ok })
	}
	var going []*startItem
	for _, it := range items {
		v := it.Val
		k := v.a.IdempotencyKey
		if k == "" {
			going = append(going, v)
			continue
		}
		if row := rows[k]; first[k] != v || !row.mine {
			v.replay, v.refused = row.answer(v.a.RequestHash)
			continue
		}
		going = append(going, v)
	}
	return going, nil
}

// readKeys adds the stored rows of keys to rows; a key not found is left out.
func readKeys(ctx context.Context, tx *sql.Tx, keys []string, rows map[string]keyRow) error {
	res, err := tx.QueryContext(ctx, `SELECT key, request_hash, state, registration_id, error_code, error_message
		FROM idempotency_keys WHERE key = ANY($1::text[])`, keys)
	if err != nil {
		return fmt.Errorf("read idempotency keys: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var k string
		var row keyRow
		var regID, code, msg sql.NullString
		if err := res.Scan(&k, &row.hash, &row.state, &regID, &code, &msg); err != nil {
			return fmt.Errorf("read idempotency keys: %w", err)
		}
		row.outcome = registration.Outcome{RegistrationID: regID.String, Code: code.String, Message: msg.String}
		rows[k] = row
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("read idempotency keys: %w", err)
	}
	return nil
}

// takeSeats takes n seats of ticket t, or as many as are free, and returns
// how many it took. When it took fewer, final reports whether every seat is
// paid (see takeSeat). The n attempts' holds are inserted already. The
// conditional UPDATE waits for a concurrent taker and re-checks the latest
// row, so no interleaving oversells; when it finds too few seats, the row
// is locked and read again, and what is left taken.
func takeSeats(ctx context.Context, tx *sql.Tx, t ticketKey, n int) (granted int, final bool, err error) {
	res, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken + $3
		WHERE event_id = $1 AND ticket_id = $2 AND taken + $3 <= capacity`, t.event, t.ticket, n)
	if err != nil {
		return 0, false, fmt.Errorf("hold seats: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 1 {
		return n, false, nil
	}
	var capacity, taken int64
	err = tx.QueryRowContext(ctx, `SELECT capacity, taken FROM ticket_stock WHERE event_id = $1 AND ticket_id = $2 FOR UPDATE`,
		t.event, t.ticket).Scan(&capacity, &taken)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, true, nil // a ticket without stock has no seat
	case err != nil:
		return 0, false, fmt.Errorf("lock ticket stock: %w", err)
	}
	granted = int(min(max(capacity-taken, 0), int64(n)))
	if granted > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken + $3 WHERE event_id = $1 AND ticket_id = $2`,
			t.event, t.ticket, granted); err != nil {
			return 0, false, fmt.Errorf("hold seats: %w", err)
		}
		// The seats just taken are held by this batch: not final.
		return granted, false, nil
	}
	// The row is locked, so this statement's snapshot has every hold that
	// counts in taken, and the n holds of this batch, which do not (none
	// was taken).
	var holds int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM seat_holds WHERE event_id = $1 AND ticket_id = $2`,
		t.event, t.ticket).Scan(&holds); err != nil {
		return 0, false, fmt.Errorf("count paid seats: %w", err)
	}
	return 0, taken-(holds-int64(n)) >= capacity, nil
}

type emailKey struct {
	ticketKey
	email string
}

// checkEmailLimits counts what each seated attempt's email address already
// holds of its ticket (as emailHolds does, after the seat was taken, in one
// statement for the batch) plus what the batch's earlier attempts of the
// same address took, and splits the attempts into those within their limit
// and those beyond (refused with ErrEmailLimit). The batch's holds, inserted
// already for every attempt of inserted, are not counted.
func checkEmailLimits(ctx context.Context, tx *sql.Tx, seated, inserted []*startItem) (ok, limited []*startItem, err error) {
	index := map[emailKey]int{}
	var events, tickets, emails []string
	for _, v := range seated {
		if v.a.MaxPerEmail <= 0 || v.a.Email == "" {
			continue
		}
		k := emailKey{ticketKey{v.a.EventID, v.a.TicketID}, v.a.Email}
		if _, seen := index[k]; !seen {
			index[k] = len(emails)
			events, tickets, emails = append(events, k.event), append(tickets, k.ticket), append(emails, k.email)
		}
	}
	if len(emails) == 0 {
		return seated, nil, nil
	}
	counts := make([]int, 0, len(emails))
	res, err := tx.QueryContext(ctx, `SELECT
		(SELECT count(*) FROM registrations r WHERE r.event_id = u.e AND r.ticket_id = u.t AND r.email_key = u.m AND r.status <> 'cancelled')
		+ (SELECT count(*) FROM seat_holds h WHERE h.event_id = u.e AND h.ticket_id = u.t AND h.email = u.m)
		FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(e, t, m, i) ORDER BY u.i`, events, tickets, emails)
	if err != nil {
		return nil, nil, fmt.Errorf("count registrations by email: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var n int
		if err := res.Scan(&n); err != nil {
			return nil, nil, fmt.Errorf("count registrations by email: %w", err)
		}
		counts = append(counts, n)
	}
	if err := res.Err(); err != nil {
		return nil, nil, fmt.Errorf("count registrations by email: %w", err)
	}
	if len(counts) != len(emails) {
		return nil, nil, fmt.Errorf("count registrations by email: %d counts for %d addresses", len(counts), len(emails))
	}
	for _, v := range inserted {
		if i, ok := index[emailKey{ticketKey{v.a.EventID, v.a.TicketID}, v.a.Email}]; ok {
			counts[i]--
		}
	}
	for _, v := range seated {
		if v.a.MaxPerEmail <= 0 || v.a.Email == "" {
			ok = append(ok, v)
			continue
		}
		i := index[emailKey{ticketKey{v.a.EventID, v.a.TicketID}, v.a.Email}]
		if counts[i] >= v.a.MaxPerEmail {
			v.refused = registration.ErrEmailLimit
			limited = append(limited, v)
			continue
		}
		counts[i]++
		ok = append(ok, v)
	}
	return ok, limited, nil
}

// giveSeatsBack returns the seats that the attempts took in this batch;
// their stock rows are locked by it already.
func giveSeatsBack(ctx context.Context, tx *sql.Tx, items []*startItem) error {
	tickets, groups := byTicket(len(items), func(i int) ticketKey { return ticketKey{items[i].a.EventID, items[i].a.TicketID} })
	for _, t := range tickets {
		if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - $3 WHERE event_id = $1 AND ticket_id = $2`,
			t.event, t.ticket, len(groups[t])); err != nil {
			return fmt.Errorf("give the seats back: %w", err)
		}
	}
	return nil
}

// insertHolds inserts the seat holds of the attempts: new rows, which no
// other transaction can be waiting for.
func insertHolds(ctx context.Context, tx *sql.Tx, items []*startItem) error {
	if len(items) == 0 {
		return nil
	}
	n := len(items)
	ids, events, tickets, keys, emails, drafts := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	created, expires := make([]time.Time, n), make([]time.Time, n)
	for i, v := range items {
		a := v.a
		draft, err := json.Marshal(a.Draft)
		if err != nil {
			return fmt.Errorf("encode attempt draft: %w", err)
		}
		ids[i], events[i], tickets[i], keys[i], emails[i], drafts[i] = a.ID, a.EventID, a.TicketID, a.IdempotencyKey, a.Email, string(draft)
		created[i], expires[i] = a.CreatedAt.UTC(), a.ResolveAfter.UTC()
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO seat_holds (id, event_id, ticket_id, idempotency_key, email, created_at, expires_at, draft)
		SELECT id, e, t, NULLIF(k, ''), m, c, x, d::jsonb
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[])
			AS u(id, e, t, k, m, c, x, d)`, ids, events, tickets, keys, emails, created, expires, drafts); err != nil {
		return fmt.Errorf("hold seats: %w", err)
	}
	return nil
}

// forgetKeys deletes the keys that the attempts reserved in this batch, as
// if they had never come.
func forgetKeys(ctx context.Context, tx *sql.Tx, items []*startItem) error {
	var keys, ids []string
	for _, v := range items {
		if v.a.IdempotencyKey != "" {
			keys, ids = append(keys, v.a.IdempotencyKey), append(ids, v.a.ID)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys k USING unnest($1::text[], $2::text[]) AS u(key, id)
		WHERE k.key = u.key AND k.attempt_id = u.id`, keys, ids); err != nil {
		return fmt.Errorf("forget idempotency keys: %w", err)
	}
	return nil
}

// settleSoldOut stores the sell-out under the keys that the attempts
// reserved in this batch.
func settleSoldOut(ctx context.Context, tx *sql.Tx, items []*startItem) error {
	var keys, ids, regs, codes, msgs []string
	var times []time.Time
	for _, v := range items {
		if v.a.IdempotencyKey == "" {
			continue
		}
		keys, ids = append(keys, v.a.IdempotencyKey), append(ids, v.a.ID)
		regs, codes, msgs = append(regs, v.soldOut.RegistrationID), append(codes, v.soldOut.Code), append(msgs, v.soldOut.Message)
		times = append(times, v.a.CreatedAt.UTC())
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `UPDATE idempotency_keys k SET state = 'done', registration_id = NULLIF(u.r, ''),
			error_code = NULLIF(u.c, ''), error_message = NULLIF(u.m, ''), updated_at = u.at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) AS u(key, id, r, c, m, at)
		WHERE k.key = u.key AND k.attempt_id = u.id`, keys, ids, regs, codes, msgs, times); err != nil {
		return fmt.Errorf("settle idempotency keys: %w", err)
	}
	return nil
}

// settleKeys stores outcomes under keys as settleKey does, in one statement
// taking the keys in order. The keys must be distinct.
func settleKeys(ctx context.Context, tx *sql.Tx, keys, hashes, ids []string, outcomes []registration.Outcome, times []time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	n := len(keys)
	regs, codes, msgs := make([]string, n), make([]string, n), make([]string, n)
	for i, o := range outcomes {
		regs[i], codes[i], msgs[i] = o.RegistrationID, o.Code, o.Message
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO idempotency_keys (key, request_hash, attempt_id, state,
			registration_id, error_code, error_message, created_at, updated_at)
		SELECT u.key, u.hash, u.id, 'done', NULLIF(u.r, ''), NULLIF(u.c, ''), NULLIF(u.m, ''), u.at, u.at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
			AS u(key, hash, id, r, c, m, at) ORDER BY u.key
		ON CONFLICT (key) DO UPDATE SET state = 'done', registration_id = excluded.registration_id,
			error_code = excluded.error_code, error_message = excluded.error_message, updated_at = excluded.updated_at
		WHERE idempotency_keys.attempt_id = excluded.attempt_id`, keys, hashes, ids, regs, codes, msgs, times); err != nil {
		return fmt.Errorf("settle idempotency keys: %w", err)
	}
	return nil
}

// deleteHolds deletes the holds of ids, locked in id order first, and
// returns those that existed with their tickets.
func deleteHolds(ctx context.Context, tx *sql.Tx, ids []string) (map[string]ticketKey, error) {
	res, err := tx.QueryContext(ctx, `DELETE FROM seat_holds WHERE id IN (
			SELECT id FROM seat_holds WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE)
		RETURNING id, event_id, ticket_id`, ids)
	if err != nil {
		return nil, fmt.Errorf("settle holds: %w", err)
	}
	defer res.Close()
	found := map[string]ticketKey{}
	for res.Next() {
		var id string
		var t ticketKey
		if err := res.Scan(&id, &t.event, &t.ticket); err != nil {
			return nil, fmt.Errorf("settle holds: %w", err)
		}
		found[id] = t
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("settle holds: %w", err)
	}
	return found, nil
}

// runCompletes is a batch of CompleteAttempts: completeAttempt for many
// attempts, each step one statement for the batch.
func runCompletes(ctx context.Context, tx *sql.Tx, items []*groupcommit.Item[*completeItem]) error {
	var going []*groupcommit.Item[*completeItem]
	seen := map[string]bool{}
	for _, it := range items {
		if seen[it.Val.r.ID] {
			it.Err = registration.ErrAlreadyRegistered // the first of the batch registers it
			continue
		}
		seen[it.Val.r.ID] = true
		going = append(going, it)
	}
	inserted, err := insertRegistrations(ctx, tx, going)
	if err != nil {
		return err
	}
	going = slices.DeleteFunc(going, func(it *groupcommit.Item[*completeItem]) bool {
		if !inserted[it.Val.r.ID] {
			it.Err = registration.ErrAlreadyRegistered
			return true
		}
		return false
	})
	if len(going) == 0 {
		return nil
	}
	var keys, hashes, ids []string
	var outcomes []registration.Outcome
	var times []time.Time
	holdIDs := make([]string, 0, len(going))
	keySeen, holdSeen := map[string]bool{}, map[string]bool{}
	for _, it := range going {
		a, r := it.Val.a, it.Val.r
		if holdSeen[a.ID] {
			return errAlone // two registrations of one attempt
		}
		holdSeen[a.ID] = true
		holdIDs = append(holdIDs, a.ID)
		if a.IdempotencyKey == "" {
			continue
		}
		if keySeen[a.IdempotencyKey] {
			return errAlone // which settles the key last depends on their order
		}
		keySeen[a.IdempotencyKey] = true
		keys, hashes, ids = append(keys, a.IdempotencyKey), append(hashes, a.RequestHash), append(ids, a.ID)
		outcomes, times = append(outcomes, registration.Outcome{RegistrationID: r.ID}), append(times, r.CreatedAt.UTC())
	}
	if err := settleKeys(ctx, tx, keys, hashes, ids, outcomes, times); err != nil {
		return err
	}
	found, err := deleteHolds(ctx, tx, holdIDs)
	if err != nil {
		return err
	}
	// A hold that expired and was swept: take a seat afresh if one is left.
	var swept []ticketKey
	for _, it := range going {
		if _, ok := found[it.Val.a.ID]; !ok {
			swept = append(swept, ticketKey{it.Val.a.EventID, it.Val.a.TicketID})
		}
	}
	tickets, groups := byTicket(len(swept), func(i int) ticketKey { return swept[i] })
	for _, t := range tickets {
		res, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken + $3
			WHERE event_id = $1 AND ticket_id = $2 AND taken + $3 <= capacity`, t.event, t.ticket, len(groups[t]))
		if err != nil {
			return fmt.Errorf("retake seats: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errAlone // not all of them get one: each finds out alone
		}
	}
	if err := insertAllSteps(ctx, tx, going); err != nil {
		return err
	}
	for _, it := range going {
		if err := it.Val.enqueue(it.Ctx, tx, it.Val.r.ID); err != nil {
			return fmt.Errorf("enqueue registration: %w", err)
		}
	}
	return nil
}

// insertRegistrations inserts the registrations (distinct ids) in id order,
// doing nothing for one that exists, and returns the ids inserted.
func insertRegistrations(ctx context.Context, tx *sql.Tx, items []*groupcommit.Item[*completeItem]) (map[string]bool, error) {
	n := len(items)
	if n == 0 {
		return nil, nil
	}
	str := func() []string { return make([]string, n) }
	ids, events, tickets, statuses, currencies := str(), str(), str(), str(), str()
	firsts, lasts, emails, companies := str(), str(), str(), str()
	providers, references, brands, last4s := str(), str(), str(), str()
	line1s, line2s, cities, postals, regions, countries, searches, emailKeys := str(), str(), str(), str(), str(), str(), str(), str()
	consentTexts := str()
	amounts, newsletters := make([]int64, n), make([]bool, n)
	consented, created := make([]*time.Time, n), make([]time.Time, n)
	for i, it := range items {
		r := it.Val.r
		b := r.Billing
		ids[i], events[i], tickets[i], statuses[i], currencies[i] = r.ID, r.EventID, r.TicketID, string(r.Status), r.Currency
		firsts[i], lasts[i], emails[i], companies[i] = r.FirstName, r.LastName, r.Email, r.Company
		providers[i], references[i], brands[i], last4s[i] = r.Payment.Provider, r.Payment.Reference, r.Payment.Brand, r.Payment.Last4
		line1s[i], line2s[i], cities[i], postals[i], regions[i], countries[i] = b.Line1, b.Line2, b.City, b.PostalCode, b.Region, b.Country
		searches[i], emailKeys[i] = searchText(r.FirstName, r.LastName, r.Email, r.Company), registration.EmailKey(r.Email)
		amounts[i], newsletters[i], created[i] = r.Amount, r.Newsletter, r.CreatedAt.UTC()
		consentTexts[i] = r.NewsletterConsentText
		if !r.NewsletterConsentedAt.IsZero() {
			t := r.NewsletterConsentedAt.UTC()
			consented[i] = &t
		}
	}
	res, err := tx.QueryContext(ctx, `INSERT INTO registrations (id, event_id, ticket_id, status, amount, currency,
		first_name, last_name, email, company, newsletter, newsletter_consented_at, payment_provider, payment_reference,
		card_brand, card_last4, billing_line1, billing_line2, billing_city, billing_postal_code, billing_region,
		billing_country, search, email_key, newsletter_consent_text, created_at, updated_at)
		SELECT * , u.created FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
			$7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::timestamptz[], $13::text[], $14::text[],
			$15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[],
			$22::text[], $23::text[], $24::text[], $26::text[], $25::timestamptz[]) AS u(id, e, t, s, a, c, f, l, m, co, n, nc, pp, pr,
			cb, cl, b1, b2, bc, bp, br, bn, se, ek, nt, created) ORDER BY u.id
		ON CONFLICT (id) DO NOTHING RETURNING id`,
		ids, events, tickets, statuses, amounts, currencies, firsts, lasts, emails, companies, newsletters, consented,
		providers, references, brands, last4s, line1s, line2s, cities, postals, regions, countries, searches, emailKeys, created,
		consentTexts)
	if err != nil {
		return nil, fmt.Errorf("insert registrations: %w", err)
	}
	defer res.Close()
	inserted := make(map[string]bool, n)
	for res.Next() {
		var id string
		if err := res.Scan(&id); err != nil {
			return nil, fmt.Errorf("insert registrations: %w", err)
		}
		inserted[id] = true
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("insert registrations: %w", err)
	}
	return inserted, nil
}

// insertAllSteps inserts the steps of every registration with one
// statement.
func insertAllSteps(ctx context.Context, tx *sql.Tx, items []*groupcommit.Item[*completeItem]) error {
	var ids, names, statuses []string
	var times []time.Time
	for _, it := range items {
		r := it.Val.r
		for _, st := range r.Steps {
			ids, names, statuses = append(ids, r.ID), append(names, string(st.Name)), append(statuses, string(st.Status))
			times = append(times, r.CreatedAt.UTC())
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO registration_steps (registration_id, step, status, attempts, last_error, updated_at)
		SELECT id, step, status, 0, '', at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(id, step, status, at)`,
		ids, names, statuses, times); err != nil {
		return fmt.Errorf("insert steps: %w", err)
	}
	return nil
}

// runFails is a batch of FailAttempts: failAttempt for many attempts. The
// keys are settled or forgotten (a batch doing both, or touching one key
// twice, runs alone), then the holds deleted and their seats given back.
func runFails(ctx context.Context, tx *sql.Tx, items []*groupcommit.Item[*failItem]) error {
	var keys, hashes, ids []string
	var outcomes []registration.Outcome
	var times []time.Time
	settles, forgets := 0, 0
	seen := map[string]bool{}
	holdIDs := make([]string, 0, len(items))
	for _, it := range items {
		v := it.Val
		holdIDs = append(holdIDs, v.a.ID)
		if v.a.IdempotencyKey == "" {
			continue
		}
		if seen[v.a.IdempotencyKey] {
			return errAlone
		}
		seen[v.a.IdempotencyKey] = true
		keys, hashes, ids = append(keys, v.a.IdempotencyKey), append(hashes, v.a.RequestHash), append(ids, v.a.ID)
		times = append(times, v.now.UTC())
		if v.o != nil {
			settles++
			outcomes = append(outcomes, *v.o)
		} else {
			forgets++
		}
	}
	switch {
	case settles > 0 && forgets > 0:
		return errAlone
	case settles > 0:
		if err := settleKeys(ctx, tx, keys, hashes, ids, outcomes, times); err != nil {
			return err
		}
	case forgets > 0:
		// Only keys still in progress: one this attempt already settled (a
		// late resolver after the attempt completed) keeps its outcome.
		if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency_keys WHERE key IN (
				SELECT key FROM idempotency_keys WHERE key = ANY($1::text[]) ORDER BY key FOR UPDATE)
			AND (key, attempt_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND state = 'in_progress'`,
			keys, ids); err != nil {
			return fmt.Errorf("forget idempotency keys: %w", err)
		}
	}
	found, err := deleteHolds(ctx, tx, holdIDs)
	if err != nil {
		return err
	}
	released := make([]ticketKey, 0, len(found))
	for _, t := range found {
		released = append(released, t)
	}
	tickets, groups := byTicket(len(released), func(i int) ticketKey { return released[i] })
	for _, t := range tickets {
		if _, err := tx.ExecContext(ctx, `UPDATE ticket_stock SET taken = taken - $3 WHERE event_id = $1 AND ticket_id = $2`,
			t.event, t.ticket, len(groups[t])); err != nil {
			return fmt.Errorf("release seats: %w", err)
		}
	}
	return nil
}
