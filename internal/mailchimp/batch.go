package mailchimp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/registration"
)

// MaxBatch is the most members Mailchimp takes in one batch subscribe call.
const MaxBatch = 500

// DefaultBatchWindow is how long a batch stays open for more members after
// its first one arrives.
const DefaultBatchWindow = 25 * time.Millisecond

const (
	opBatch = "batch subscribe"
	// maxBatchBody bounds the answer read: 500 member objects of a few KB.
	maxBatchBody = 16 << 20

	errContactExists = "ERROR_CONTACT_EXISTS"
)

// batch is one POST /lists/{list_id} in the making. The first Subscribe
// that finds no open batch opens one and starts its flusher; the batch is
// sent when it is full, or once its window has passed and a connection is
// free (members keep joining while it waits for one).
type batch struct {
	entries []*entry
	hashes  map[string]bool
	full    chan struct{} // closed when the batch reaches the size limit
	sealed  bool          // no more members; guarded by Client.mu
	waiting int           // callers still waiting for the answer
	ctx     context.Context
	cancel  context.CancelFunc // when every caller has given up
}

// entry is one Subscribe call's member in a batch.
type entry struct {
	member    batchMember
	hash      string
	abandoned bool         // the caller gave up before the batch was sealed
	done      chan outcome // buffered: the flusher never blocks on it
}

// outcome is one member's result: err, or exists when the address is
// already on the list and must be updated member by member.
type outcome struct {
	err    error
	exists bool
}

// batchMember is one members[] entry. status applies only to new members:
// update_existing is false, so existing members are left as they are.
type batchMember struct {
	EmailAddress string            `json:"email_address"`
	Status       string            `json:"status"`
	MergeFields  map[string]string `json:"merge_fields,omitempty"`
	Tags         []string          `json:"tags,omitempty"`
}

type batchRequest struct {
	Members        []batchMember `json:"members"`
	UpdateExisting bool          `json:"update_existing"`
	SyncTags       bool          `json:"sync_tags"`
}

type batchAnswer struct {
	NewMembers     []batchAnswerMember `json:"new_members"`
	UpdatedMembers []batchAnswerMember `json:"updated_members"`
	Errors         []batchAnswerError  `json:"errors"`
}

type batchAnswerMember struct {
	ID           string `json:"id"`
	EmailAddress string `json:"email_address"`
}

type batchAnswerError struct {
	EmailAddress string `json:"email_address"`
	Error        string `json:"error"`
	ErrorCode    string `json:"error_code"`
	Field        string `json:"field"`
	FieldMessage string `json:"field_message"`
}

// mergeFields is FNAME/LNAME of s. Empty names are left out rather than
// sent as "", which would clear what an existing member already has.
func mergeFields(s registration.Subscriber) map[string]string {
	var mf map[string]string
	for k, v := range map[string]string{"FNAME": s.FirstName, "LNAME": s.LastName} {
		if v = strings.TrimSpace(v); v != "" {
			if mf == nil {
				mf = map[string]string{}
			}
			mf[k] = v
		}
	}
	return mf
}

// Subscribe adds s to the audience, or updates the member already there,
// and tags them with the event id. It is idempotent, and an existing member
// who unsubscribed stays unsubscribed.
//
// Concurrent calls share one batch subscribe request (up to MaxBatch
// members), sent with update_existing false: new members are created with
// the opt-in status, the event tag and their names, and existing members
// are left untouched by it (the batch call cannot update an existing member
// without also setting its status, which would resubscribe someone who
// unsubscribed). An address already on the list is then upserted on its own
// as before: PUT with status_if_new, then the tag.
//
// Errors are *Error: Permanent() reports a rejection retrying cannot fix
// (forgotten or compliance-state address, invalid data, bad key or list);
// otherwise the failure is transient, with RetryAfter() set when Mailchimp
// sent a Retry-After header. A failure of the whole batch request is every
// member's error; a member's entry in the answer's errors is only its own.
func (c *Client) Subscribe(ctx context.Context, s registration.Subscriber) error {
	addr := strings.TrimSpace(s.Email)
	if addr == "" {
		return &Error{Op: opBatch, Detail: "the subscriber has no email address", permanent: true}
	}
	if err := ctx.Err(); err != nil {
		return &Error{Op: opBatch, Err: err}
	}
	s.Email = addr
	e := &entry{
		hash: SubscriberHash(addr),
		done: make(chan outcome, 1),
		member: batchMember{
			EmailAddress: addr,
			Status:       c.statusIfNew,
			MergeFields:  mergeFields(s),
		},
	}
	if s.EventID != "" {
		e.member.Tags = []string{s.EventID}
	}
	b := c.join(ctx, e)
	if b == nil {
		// The same address is already in the open batch (Mailchimp refuses
		// duplicates in one call): upsert it on its own.
		return c.upsert(ctx, s)
	}
	select {
	case o := <-e.done:
		if o.exists {
			return c.upsert(ctx, s)
		}
		return o.err
	case <-ctx.Done():
		c.abandon(b, e)
		return &Error{Op: opBatch, Err: ctx.Err()}
	}
}

// join adds e to the open batch, opening one (and starting its flusher)
// when there is none. It returns nil when the address is in the open batch
// already. A batch's call is traced under the caller that opened it: its
// context's values, not its cancellation, are the batch's.
func (c *Client) join(ctx context.Context, e *entry) *batch {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.open
	if b != nil && b.ctx.Err() != nil {
		// Every caller of b gave up; its flusher sends nothing.
		c.seal(b)
		b = nil
	}
	if b != nil && b.hashes[e.hash] {
		return nil
	}
	if b == nil {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		b = &batch{hashes: map[string]bool{}, full: make(chan struct{}), ctx: ctx, cancel: cancel}
		c.open = b
		go c.flush(b)
	}
	b.entries = append(b.entries, e)
	b.hashes[e.hash] = true
	b.waiting++
	if len(b.entries) >= c.batchSize {
		c.seal(b)
		close(b.full)
	}
	return b
}

// seal closes b to new members. Call with c.mu held.
func (c *Client) seal(b *batch) {
	b.sealed = true
	if c.open == b {
		c.open = nil
	}
}

// abandon records that e's caller stopped waiting: its member is left out
// if the batch is not sealed yet, and the request is canceled once nobody
// waits for it.
func (c *Client) abandon(b *batch, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !b.sealed {
		e.abandoned = true
		delete(b.hashes, e.hash)
	}
	b.waiting--
	if b.waiting == 0 {
		b.cancel()
	}
}

// flush sends b once it is full, or once its window has passed and a
// connection is free, and hands every member its outcome.
func (c *Client) flush(b *batch) {
	defer b.cancel()
	timer := time.NewTimer(c.window)
	defer timer.Stop()
	select {
	case <-b.full:
	case <-timer.C:
	case <-b.ctx.Done():
	}
	got := false
	select {
	case c.sem <- struct{}{}:
		got = true
	case <-b.ctx.Done():
	}
	if got {
		defer func() { <-c.sem }()
	}

	c.mu.Lock()
	c.seal(b)
	live := make([]*entry, 0, len(b.entries))
	for _, e := range b.entries {
		if !e.abandoned {
			live = append(live, e)
		}
	}
	c.mu.Unlock()
	if err := b.ctx.Err(); err != nil || !got {
		// Every caller gave up: nobody is left to answer, and nothing
		// is sent.
		for _, e := range live {
			e.done <- outcome{err: &Error{Op: opBatch, Err: context.Cause(b.ctx)}}
		}
		return
	}
	if len(live) == 0 {
		return
	}

	ans, err := c.sendBatch(b.ctx, live)
	if err != nil {
		for _, e := range live {
			e.done <- outcome{err: err}
		}
		return
	}
	for _, e := range live {
		e.done <- ans[e.hash]
	}
}

// sendBatch posts the members of live and returns each one's outcome by
// subscriber hash, or the error of the whole request. The caller holds a
// connection slot.
func (c *Client) sendBatch(ctx context.Context, live []*entry) (map[string]outcome, error) {
	in := batchRequest{Members: make([]batchMember, len(live))}
	for i, e := range live {
		in.Members[i] = e.member
	}
	payload, err := json.Marshal(in)
	if err != nil {
		return nil, &Error{Op: opBatch, Err: err, permanent: true}
	}
	target := c.base + "/lists/" + url.PathEscape(c.listID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(payload))
	if err != nil {
		return nil, &Error{Op: opBatch, Err: err, permanent: true}
	}
	c.setHeaders(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &Error{Op: opBatch, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, responseError(opBatch, resp, data)
	}
	var ans batchAnswer
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBatchBody)).Decode(&ans); err != nil {
		// The members may or may not have been added; a retry repeats
		// nothing that matters.
		return nil, &Error{Op: opBatch, StatusCode: resp.StatusCode,
			Detail: "Mailchimp's answer could not be read", Err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // reuse the connection

	out := make(map[string]outcome, len(live))
	for _, m := range append(ans.NewMembers, ans.UpdatedMembers...) {
		out[answerHash(m.ID, m.EmailAddress)] = outcome{}
	}
	for _, me := range ans.Errors {
		h := SubscriberHash(me.EmailAddress)
		if me.ErrorCode == errContactExists {
			out[h] = outcome{exists: true}
			continue
		}
		e := &Error{Op: opBatch, Code: me.ErrorCode, Detail: me.Error, permanent: true}
		if me.Field != "" || me.FieldMessage != "" {
			e.Fields = []FieldError{{Field: me.Field, Message: me.FieldMessage}}
		}
		out[h] = outcome{err: e}
	}
	for _, e := range live {
		if _, ok := out[e.hash]; !ok {
			// Neither added nor refused: ask again later.
			out[e.hash] = outcome{err: &Error{Op: opBatch, StatusCode: resp.StatusCode,
				Detail: fmt.Sprintf("Mailchimp's answer does not mention %s; retry the subscription", e.member.EmailAddress)}}
		}
	}
	return out, nil
}

// answerHash is a member's subscriber hash from the answer: its id, or the
// hash of its address when the id is missing.
func answerHash(id, email string) string {
	if id != "" {
		return strings.ToLower(id)
	}
	return SubscriberHash(email)
}

// upsert writes one member as the batch call cannot: PUT by subscriber hash
// with status_if_new, so an existing member's status is never changed, then
// the event tag.
func (c *Client) upsert(ctx context.Context, s registration.Subscriber) error {
	member := c.base + "/lists/" + url.PathEscape(c.listID) + "/members/" + SubscriberHash(s.Email)
	body := memberBody{EmailAddress: s.Email, StatusIfNew: c.statusIfNew, MergeFields: mergeFields(s)}
	if err := c.do(ctx, "upsert member", http.MethodPut, member, body); err != nil {
		return err
	}
	if s.EventID == "" {
		return nil
	}
	// PUT has no tags field; tags are created on first use.
	return c.do(ctx, "tag member", http.MethodPost, member+"/tags",
		tagsBody{Tags: []tag{{Name: s.EventID, Status: "active"}}})
}
