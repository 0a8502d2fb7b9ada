package providertest

import (
	"net/smtp"
	"strings"
	"testing"
)

// mimeMessage is a receipt-shaped message with a body to be filled in.
func mimeMessage(header, body string) string {
	return "From: tickets@gopherfest.example\r\nTo: ada@example.org\r\nSubject: Your ticket\r\n" +
		"Reply-To: \"GopherFest e.V.\" <hello@gopherfest.example>\r\nMIME-Version: 1.0\r\n" + header + "\r\n" + body
}

const validMixed = "Content-Type: multipart/mixed; boundary=\"=_m1\"\r\n"

func mixedBody(attachmentHeaders, attachmentBody, end string) string {
	return "--=_m1\r\nContent-Type: multipart/alternative; boundary=\"=_a1\"\r\n\r\n" +
		"--=_a1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n" +
		"--=_a1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>Gr=C3=BC=C3=9Fe</p>\r\n" +
		"--=_a1--\r\n\r\n" +
		"--=_m1\r\n" + attachmentHeaders + "\r\n" + attachmentBody + "\r\n" + end
}

const icsHeaders = "Content-Type: text/calendar; charset=utf-8; method=PUBLISH\r\nContent-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=gopherfest-2027.ics\r\n"

func TestSMTPFakeStrictness(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		msg     string
		refused bool
	}{
		{"receipt", mimeMessage(validMixed, mixedBody(icsHeaders, icsBase64, "--=_m1--\r\n")), false},
		{"plain text", mimeMessage("Content-Type: text/plain; charset=utf-8\r\n", "hello\r\n"), false},
		{"attachment not base64", mimeMessage(validMixed, mixedBody(icsHeaders, "BEGIN:VCALENDAR!", "--=_m1--\r\n")), true},
		{"attachment without a file name", mimeMessage(validMixed,
			mixedBody(strings.Replace(icsHeaders, "; filename=gopherfest-2027.ics", "", 1), icsBase64, "--=_m1--\r\n")), true},
		{"no closing delimiter", mimeMessage(validMixed, mixedBody(icsHeaders, icsBase64, "")), true},
		{"multipart without a boundary", mimeMessage("Content-Type: multipart/mixed\r\n", "--x\r\n\r\nhi\r\n--x--\r\n"), true},
		{"unknown transfer encoding", mimeMessage(validMixed,
			mixedBody(strings.Replace(icsHeaders, "base64", "uuencode", 1), icsBase64, "--=_m1--\r\n")), true},
		{"8-bit header", mimeMessage("X-Name: Zoë\r\nContent-Type: text/plain\r\n", "hi\r\n"), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recordingTB{TB: t}
			fake := NewSMTP(rec, "registrar", "pass")
			host := fake.Addr()[:strings.LastIndexByte(fake.Addr(), ':')]
			err := smtp.SendMail(fake.Addr(), smtp.PlainAuth("", "registrar", "pass", host),
				"tickets@gopherfest.example", []string{"ada@example.org"}, []byte(tc.msg))
			if refused := err != nil; refused != tc.refused {
				t.Fatalf("SendMail = %v, want refused %v", err, tc.refused)
			}
			if reported := len(rec.errors()) > 0; reported != tc.refused {
				t.Errorf("test failure reported = %v (%q), want %v", reported, rec.errors(), tc.refused)
			}
			if tc.refused {
				if !strings.Contains(err.Error(), "554") {
					t.Errorf("SendMail = %v, want a 554 reply", err)
				}
				if n := len(fake.Received()); n != 0 {
					t.Errorf("received %d messages", n)
				}
				return
			}
			got := fake.Received()
			if len(got) != 1 {
				t.Fatalf("received %d messages", len(got))
			}
			if tc.name != "receipt" {
				return
			}
			m := got[0]
			if m.Text != "Grüße" || m.HTML != "<p>Grüße</p>" {
				t.Errorf("decoded text %q, HTML %q", m.Text, m.HTML)
			}
			if len(m.Attachments) != 1 || m.Attachments[0].Filename != "gopherfest-2027.ics" ||
				m.Attachments[0].ContentType != "text/calendar; charset=utf-8; method=PUBLISH" ||
				string(m.Attachments[0].Data) != "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n" {
				t.Errorf("attachments = %+v", m.Attachments)
			}
			if got := m.Msg.Header.Get("Reply-To"); got != `"GopherFest e.V." <hello@gopherfest.example>` {
				t.Errorf("Reply-To = %q", got)
			}
		})
	}
}
