package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a registrar process started by the load command.
type child struct {
	cmd     *exec.Cmd
	baseURL string
	logPath string
	exited  chan struct{}
	waitErr error
}

// eventFile is the event the started registrar sells: one paid ticket.
func eventFile(capacity int, price string, now time.Time) string {
	starts := now.AddDate(1, 0, 0).UTC().Format(time.RFC3339)
	return fmt.Sprintf(`{
  "id": "loadfest",
  "name": "LoadFest",
  "starts_at": %q,
  "venue": "The Load Hall, London",
  "currency": "EUR",
  "email_from": {"address": "tickets@loadfest.example", "name": "LoadFest"},
  "tickets": [
    {"id": "standard", "name": "Standard", "price": %q, "capacity": %d}
  ]
}
`, starts, price, capacity)
}

// registrarEnv is the environment of the started registrar: a fresh
// database, no rate limit or per-client connection cap, the event file,
// and the fakes as providers. It listens on addr ("127.0.0.1:0": any free
// port), and serves its metrics on any free loopback port.
func registrarEnv(o options, dir, addr, fakesURL string, getenv func(string) string) []string {
	db := "sqlite:" + sqlitePath(dir)
	if o.database != "" {
		db = o.database
	}
	env := []string{
		"REGISTRAR_ADDR=" + addr,
		"REGISTRAR_BASE_URL=http://127.0.0.1",
		"REGISTRAR_DATABASE_URL=" + db,
		"REGISTRAR_EVENT_FILE=" + filepath.Join(dir, "event.json"),
		"REGISTRAR_RATE_LIMIT=0",
		"REGISTRAR_MAX_CONNS_PER_CLIENT=0", // every client is 127.0.0.1
		// Several registrars may run on the machine at once: each serves
		// its metrics on a free loopback port.
		"REGISTRAR_METRICS_ADDR=127.0.0.1:0",
		"REGISTRAR_ADMIN_PASSWORD=load-test-admin-password",
		"REGISTRAR_PAYMENT=paypal",
		"PAYPAL_CLIENT_ID=load-client",
		"PAYPAL_CLIENT_SECRET=load-secret",
		"PAYPAL_API_BASE=" + fakesURL,
		"REGISTRAR_EMAIL=sendgrid",
		"SENDGRID_API_KEY=SG.load-test-key",
		"SENDGRID_API_BASE=" + fakesURL,
		"REGISTRAR_MAILING_LIST=mailchimp",
		"MAILCHIMP_API_KEY=loadtestkey-us21",
		"MAILCHIMP_LIST_ID=loadlist",
		"MAILCHIMP_API_BASE=" + fakesURL + "/3.0",
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, o.registrarEnv...)
}

// sqlitePath is the started registrar's SQLite database in dir.
func sqlitePath(dir string) string { return filepath.Join(dir, "registrar.db") }

// prepareDataDir writes the event file (one ticket of capacity seats) and,
// for SQLite, removes any database left from an earlier run, and the log.
func prepareDataDir(o options, dir string, capacity int) error {
	if err := os.WriteFile(filepath.Join(dir, "event.json"), []byte(eventFile(capacity, o.price, time.Now())), 0o640); err != nil {
		return fmt.Errorf("write event file: %w", err)
	}
	if o.database == "" {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			os.Remove(sqlitePath(dir) + suffix)
		}
	}
	os.Remove(filepath.Join(dir, "registrar.log"))
	return nil
}

// startRegistrar starts the registrar binary on a fresh database and waits
// until it is ready.
func startRegistrar(ctx context.Context, o options, dir string, env []string, log *slog.Logger) (*child, error) {
	if err := prepareDataDir(o, dir, o.capacity); err != nil {
		return nil, err
	}
	return startReady(ctx, o.registrar, dir, env, log)
}

// startReady starts registrar on what dir holds and waits until it is ready.
func startReady(ctx context.Context, bin, dir string, env []string, log *slog.Logger) (*child, error) {
	c, err := spawn(ctx, bin, dir, env, log)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c.baseURL, 30*time.Second); err != nil {
		c.stop(log)
		return nil, fmt.Errorf("registrar at %s: %w; its log: %s", c.baseURL, err, tail(c.logPath))
	}
	log.Info("registrar started", "pid", c.pid(), "url", c.baseURL, "log", c.logPath)
	return c, nil
}

// spawn starts registrar with env in dir, its log appended to
// dir/registrar.log, and returns once it listens.
func spawn(ctx context.Context, bin, dir string, env []string, log *slog.Logger) (*child, error) {
	logPath := filepath.Join(dir, "registrar.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("registrar log: %w", err)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("registrar stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start registrar %s: %w", bin, err)
	}
	c := &child{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if u, ok := strings.CutPrefix(line, "registrar listening on "); ok {
				select {
				case addr <- strings.TrimSpace(u):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		c.waitErr = cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()

	deadline := time.NewTimer(5 * time.Minute)
	defer deadline.Stop()
	select {
	case u := <-addr:
		c.baseURL = u
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("registrar exited at start (%v); its log: %s", c.waitErr, tail(logPath))
	case <-deadline.C:
		c.stop(log)
		return nil, fmt.Errorf("registrar did not start listening within 5 minutes; its log: %s", tail(logPath))
	case <-ctx.Done():
		c.stop(log)
		return nil, ctx.Err()
	}
}

// freeAddr returns a loopback address with a port free right now, so that a
// restarted registrar can listen where the first one did.
func freeAddr() (string, error) {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls /readyz until it answers 200.
func waitReady(ctx context.Context, baseURL string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("not ready in time")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop ends the registrar with SIGTERM (SIGKILL after 30 s).
func (c *child) stop(log *slog.Logger) {
	if c == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		log.Warn("registrar did not stop within 30 s; killing it")
		c.cmd.Process.Kill()
		<-c.exited
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}

// procStatus reads one "kB" field (e.g. VmHWM, the peak resident set) of
// /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s: %w", field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procCPU is the CPU time (user + system) a process has used so far.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields count from after ")".
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("malformed /proc stat")
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck, nil
}

// listen opens a TCP listener on addr.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}
