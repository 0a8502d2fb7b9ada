package email

import (
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Notices renders one email to organisers listing what needs them: a
// registration whose step failed, a refund that failed, a charge whose
// outcome stayed unknown. Each item links into the back office.
type Notices struct {
	MessageID string
	EventName string
	OfficeURL string // the back office's address, e.g. https://tickets.example.org/admin
	Items     []NoticeItem
}

// NoticeItem is one thing organisers must look at.
type NoticeItem struct {
	Title  string // e.g. "A registration needs attention"
	Detail string // may be empty
	URL    string // where in the back office to look
	At     time.Time
}

type noticesView struct {
	Subject   string
	EventName string
	OfficeURL string
	Items     []noticeItemView
}

type noticeItemView struct {
	Title, Detail, URL, When string
}

// maxNoticeDetail bounds one item's detail: the email lists, the back
// office tells the whole story.
const maxNoticeDetail = 300

// RenderNotices builds the organisers' email for n, sent from from to to and
// dated now.
func (r *Renderer) RenderNotices(n Notices, from, to Address, now time.Time) (Message, error) {
	if err := n.validate(); err != nil {
		return Message{}, fmt.Errorf("email: render notices: %w", err)
	}
	subject := n.EventName + ": 1 thing needs your attention"
	if len(n.Items) != 1 {
		subject = n.EventName + ": " + strconv.Itoa(len(n.Items)) + " things need your attention"
	}
	view := noticesView{Subject: subject, EventName: n.EventName, OfficeURL: n.OfficeURL}
	for _, it := range n.Items {
		detail := strings.Join(strings.Fields(it.Detail), " ") // one line
		if len([]rune(detail)) > maxNoticeDetail {
			detail = string([]rune(detail)[:maxNoticeDetail-1]) + "…"
		}
		view.Items = append(view.Items, noticeItemView{Title: it.Title, Detail: detail, URL: it.URL,
			When: it.At.UTC().Format("2 Jan 2006 15:04 UTC")})
	}
	var text, html bytes.Buffer
	if err := r.noticesText.Execute(&text, view); err != nil {
		return Message{}, fmt.Errorf("email: render notices text: %w", err)
	}
	if err := r.noticesHTML.Execute(&html, view); err != nil {
		return Message{}, fmt.Errorf("email: render notices HTML: %w", err)
	}
	m := Message{
		ID: n.MessageID, From: from, To: to, Subject: subject, Date: now,
		Text: text.String(), HTML: html.String(),
	}
	if err := m.Validate(); err != nil {
		return Message{}, fmt.Errorf("email: render notices: %w", err)
	}
	return m, nil
}

func (n Notices) validate() error {
	var problems []string
	if n.MessageID == "" {
		problems = append(problems, "Notices.MessageID: is required")
	}
	if strings.TrimSpace(n.EventName) == "" {
		problems = append(problems, "Notices.EventName: is required")
	}
	if !absoluteHTTP(n.OfficeURL) {
		problems = append(problems, "Notices.OfficeURL: must be an absolute http or https URL")
	}
	if len(n.Items) == 0 {
		problems = append(problems, "Notices.Items: is empty")
	}
	for i, it := range n.Items {
		if strings.TrimSpace(it.Title) == "" {
			problems = append(problems, fmt.Sprintf("Notices.Items[%d].Title: is required", i))
		}
		if !absoluteHTTP(it.URL) {
			problems = append(problems, fmt.Sprintf("Notices.Items[%d].URL: must be an absolute http or https URL", i))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, strings.Join(problems, "; "))
	}
	return nil
}

// absoluteHTTP reports whether s is an absolute http or https URL.
func absoluteHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}
