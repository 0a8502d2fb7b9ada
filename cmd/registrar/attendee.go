package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/registrar/registrar/internal/admin"
	"github.com/registrar/registrar/internal/config"
	"github.com/registrar/registrar/internal/event"
	"github.com/registrar/registrar/internal/logredact"
	"github.com/registrar/registrar/internal/pipeline"
	"github.com/registrar/registrar/internal/registration"
)

const attendeeUsage = `usage:
  registrar attendee export ID|EMAIL   print a registration's data as JSON (an email exports all of its registrations)
  registrar attendee erase ID [--yes]  erase a registration's personal data for good (asks first, unless --yes)`

// attendeeArgs is a parsed "registrar attendee" command line.
type attendeeArgs struct {
	cmd    string // export, erase
	target string // a registration id, or (export) an email address
	yes    bool
}

func parseAttendeeArgs(args []string) (attendeeArgs, error) {
	var a attendeeArgs
	if len(args) == 0 {
		return a, fmt.Errorf("attendee: name a command\n%s", attendeeUsage)
	}
	a.cmd = args[0]
	var positional []string
	for _, arg := range args[1:] {
		switch {
		case arg == "--yes" || arg == "-yes" || arg == "-y":
			a.yes = true
		case strings.HasPrefix(arg, "-"):
			return a, fmt.Errorf("attendee: unknown flag %q\n%s", arg, attendeeUsage)
		default:
			positional = append(positional, arg)
		}
	}
	switch a.cmd {
	case "export":
		if a.yes {
			return a, fmt.Errorf("attendee export takes no --yes\n%s", attendeeUsage)
		}
		if len(positional) != 1 {
			return a, fmt.Errorf("attendee export: name one registration id or email address\n%s", attendeeUsage)
		}
	case "erase":
		if len(positional) != 1 {
			return a, fmt.Errorf("attendee erase: name one registration id\n%s", attendeeUsage)
		}
		if strings.Contains(positional[0], "@") {
			return a, errors.New("attendee erase: give a registration id, not an email address (registrar attendee export EMAIL lists its registrations and their ids)")
		}
	default:
		return a, fmt.Errorf("attendee: unknown command %q\n%s", a.cmd, attendeeUsage)
	}
	a.target = positional[0]
	if a.cmd == "erase" && !registration.ValidID(a.target) {
		return a, fmt.Errorf("attendee erase: %q is not a registration id (32 letters and digits, as in the back office and the status page's address)", a.target)
	}
	return a, nil
}

// isTerminal reports whether r is an interactive terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// attendeeCommand runs "registrar attendee ...".
func attendeeCommand(ctx context.Context, args []string, cfg config.Config, ev *event.Event, db *engine,
	stdin io.Reader, stdout, stderr io.Writer, log *slog.Logger, secrets *logredact.Handler) error {
	a, err := parseAttendeeArgs(args)
	if err != nil {
		return err
	}
	st := db.store
	cli := admin.Actor{Email: "cli"}
	switch a.cmd {
	case "export":
		x, err := admin.ExportData(ctx, st, ev, a.target, time.Now())
		if errors.Is(err, registration.ErrNotFound) {
			if strings.Contains(a.target, "@") {
				return fmt.Errorf("attendee export: no registration has the email address %s", a.target)
			}
			return fmt.Errorf("attendee export: there is no registration %s; give its id (from the back office) or the attendee's email address", a.target)
		}
		if err != nil {
			return fmt.Errorf("attendee export: %w", err)
		}
		for _, r := range x.Registrations {
			if err := st.Audit(ctx, registration.AuditEntry{At: time.Now().UTC(), Actor: cli.Email,
				Action: admin.ActionExportData, RegistrationID: r.ID, Detail: "personal data exported"}); err != nil {
				return fmt.Errorf("attendee export: audit: %w", err)
			}
		}
		return x.WriteJSON(stdout)
	case "erase":
		reg, err := st.Registration(ctx, a.target)
		if errors.Is(err, registration.ErrNotFound) {
			return fmt.Errorf("attendee erase: there is no registration %s; check the id in the back office", a.target)
		}
		if err != nil {
			return fmt.Errorf("attendee erase: %w", err)
		}
		if reg.Anonymised() {
			fmt.Fprintf(stdout, "registration %s was already erased on %s; nothing changed\n", reg.ID, reg.AnonymisedAt.UTC().Format(time.RFC3339))
			return nil
		}
		if !a.yes {
			if !isTerminal(stdin) {
				return errors.New("attendee erase: confirm with --yes (standard input is not a terminal to ask on)")
			}
			fmt.Fprintf(stderr, "Erase the personal data of %s %s <%s> (registration %s)?\nThis cannot be undone. Type yes to erase: ",
				reg.FirstName, reg.LastName, reg.Email, reg.ID)
			line, err := bufio.NewReader(stdin).ReadString('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("attendee erase: read the answer: %w", err)
			}
			if strings.TrimSpace(strings.ToLower(line)) != "yes" {
				return errors.New("attendee erase: not confirmed; nothing changed")
			}
		}
		office, err := cliOffice(cfg, ev, db, log, secrets)
		if err != nil {
			return err
		}
		e, err := office.Anonymise(ctx, cli, reg.ID)
		if errors.Is(err, registration.ErrAlreadyAnonymised) {
			fmt.Fprintf(stdout, "registration %s was already erased; nothing changed\n", reg.ID)
			return nil
		}
		if err != nil {
			return fmt.Errorf("attendee erase: %w", err)
		}
		msg := fmt.Sprintf("erased the personal data of registration %s", reg.ID)
		if e.OutboxFiles > 0 {
			msg += fmt.Sprintf("; %d outbox files removed", e.OutboxFiles)
		}
		if e.ListMember {
			msg += "; the mailing-list provider is asked to delete the member (a job the workers run)"
		}
		fmt.Fprintln(stdout, msg)
		return nil
	}
	return fmt.Errorf("attendee: unknown command %q", a.cmd)
}

// cliOffice is the back office's actions in a command: its jobs are
// inserted for the service's workers to run.
func cliOffice(cfg config.Config, ev *event.Event, db *engine, log *slog.Logger, secrets *logredact.Handler) (*pipeline.Office, error) {
	ad, err := newAdapters(cfg, db.store, nil, log, secrets)
	if err != nil {
		return nil, err
	}
	riverLog := slog.New(levelHandler{slog.LevelWarn, log.Handler()}).With("component", "river")
	p, err := pipeline.New(db.driver, pipeline.Deps{Store: db.store, Office: db.store, Mailer: ad.mailer, List: ad.list,
		Event: ev, BaseURL: cfg.BaseURL, Log: log}, pipeline.DefaultOptions(), false, riverLog)
	if err != nil {
		return nil, err
	}
	return p.Office(), nil
}
