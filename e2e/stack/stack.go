// Package stack starts Tollgate's three real binaries on this machine, with their dependencies:
// NATS from NATS_URL when it answers, else an embedded JetStream server; Postgres from
// DATABASE_URL, creating the database when it is missing. `make run`, the quickstart test, the
// crash tests and the end-to-end benchmarks all start the stack through it.
package stack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options say where the stack runs. Zero values take the contract's defaults.
type Options struct {
	BinDir        string // where listener, processor and queryapi are; default "bin"
	DataDir       string // generated secrets and the embedded NATS store; default ".data"
	NATSURL       string // default nats://127.0.0.1:4222
	DatabaseURL   string // default the contract's
	ListenerAddr  string // default :8080
	QueryAPIAddr  string // default :8081
	ProcessorAddr string // default :8082
	// Env are variables for every service (PAST_DUE_GRANTS, PLANS_FILE, ...). They win over what
	// the stack generates: a QUERYAPI_TOKENS, ADMIN_TOKENS, STRIPE_WEBHOOK_SECRETS or
	// QUERYAPI_LIVEMODE given here reaches the services unchanged, and Token, AdminToken and
	// WebhookSecret are then the first of those given.
	Env map[string]string
	// ProcessorEnv are extra variables for the processor only (NOTIFY_URLS, NOTIFY_SECRET, ...).
	ProcessorEnv map[string]string
	// ExtraWebhookSecrets are accepted besides the generated dev secret (e.g. the one `stripe listen` prints).
	ExtraWebhookSecrets []string
	// WebhookSecretMode binds the generated dev secret to one Stripe mode ("test" or "live"), so
	// that it signs only that mode's events; "" leaves it unbound (either mode).
	WebhookSecretMode string
	Log               io.Writer // every service's log lines, prefixed by its name; default os.Stderr
}

// Stack is a running Tollgate.
type Stack struct {
	opts          Options
	WebhookSecret string // the generated dev signing secret
	Token         string // the generated dev API token
	AdminToken    string // the generated dev admin token (ADMIN_TOKENS: admin API and console)
	NATSURL       string
	DatabaseURL   string
	EmbeddedNATS  bool
	nats          *server.Server
	procs         []*Process
	log           *prefixWriter
}

// ErrPostgresUnreachable means DATABASE_URL's server did not answer.
var ErrPostgresUnreachable = errors.New("postgres is not reachable")

// Netns is a variable of a process's environment (AddInstanceEnv) that runs it in that network
// namespace (`ip netns exec`), where its HTTP_ADDR is one of the namespace's addresses.
const Netns = "TOLLGATE_STACK_NETNS"

// ErrPortTaken means a service's address is already in use by another process.
var ErrPortTaken = errors.New("port taken")

// ErrNotOurs means a service's address answered, but not from the process the stack started.
var ErrNotOurs = errors.New("another process answers on the service's port")

// Service names, in start order.
const (
	Processor = "processor"
	Listener  = "listener"
	QueryAPI  = "queryapi"
)

func (o *Options) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.BinDir, "bin")
	def(&o.DataDir, ".data")
	def(&o.NATSURL, "nats://127.0.0.1:4222")
	def(&o.DatabaseURL, "postgres://postgres@127.0.0.1:5432/tollgate?sslmode=disable")
	def(&o.ListenerAddr, ":8080")
	def(&o.QueryAPIAddr, ":8081")
	def(&o.ProcessorAddr, ":8082")
	if o.Log == nil {
		o.Log = os.Stderr
	}
}

// Start brings the stack up and returns when all three services answer /readyz. On error,
// everything it started is stopped again.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	opts.defaults()
	st := &Stack{opts: opts, log: &prefixWriter{w: opts.Log}}
	if err := st.start(ctx); err != nil {
		_ = st.Stop()
		return nil, err
	}
	return st, nil
}

func (st *Stack) start(ctx context.Context) error {
	opts := st.opts
	var err error
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if st.WebhookSecret, err = st.secret("STRIPE_WEBHOOK_SECRETS", "webhook-secret", "whsec_"); err != nil {
		return err
	}
	if st.Token, err = st.secret("QUERYAPI_TOKENS", "api-token", "tg_dev_"); err != nil {
		return err
	}
	if st.AdminToken, err = st.secret("ADMIN_TOKENS", "admin-token", "tg_admin_"); err != nil {
		return err
	}
	// Before anything starts: a taken port ends the start at once, naming it, instead of a
	// service failing to bind while whatever holds the port answers its readiness check.
	for _, s := range []struct{ name, variable, addr string }{
		{Listener, "LISTENER_ADDR", opts.ListenerAddr}, {QueryAPI, "QUERYAPI_ADDR", opts.QueryAPIAddr}, {Processor, "PROCESSOR_ADDR", opts.ProcessorAddr},
	} {
		if err := portFree(ctx, s.addr); err != nil {
			return fmt.Errorf("%w: %s cannot serve on %s (%s): %w", ErrPortTaken, s.name, s.addr, s.variable, err)
		}
	}
	if err := st.startNATS(ctx); err != nil {
		return err
	}
	if st.DatabaseURL, err = EnsureDatabase(ctx, opts.DatabaseURL); err != nil {
		return err
	}
	for _, s := range []struct{ name, addr string }{
		{Processor, opts.ProcessorAddr}, {Listener, opts.ListenerAddr}, {QueryAPI, opts.QueryAPIAddr},
	} {
		p, err := st.StartProcess(ctx, s.name, st.serviceEnv(s.name, s.addr))
		if err != nil {
			return err
		}
		// The processor applies migrations; the others need the schema, so it goes first.
		if err := p.WaitReady(ctx, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// serviceEnv is the environment the stack gives a service serving on addr.
func (st *Stack) serviceEnv(service, addr string) map[string]string {
	dev := st.WebhookSecret
	if st.opts.WebhookSecretMode != "" {
		dev = st.opts.WebhookSecretMode + ":" + dev
	}
	secrets := strings.Join(append([]string{dev}, st.opts.ExtraWebhookSecrets...), ",")
	env := map[string]string{
		"HTTP_ADDR": addr, "NATS_URL": st.NATSURL, "DATABASE_URL": st.DatabaseURL,
		"STRIPE_WEBHOOK_SECRETS": secrets, "QUERYAPI_TOKENS": st.Token,
	}
	if service == Listener {
		delete(env, "DATABASE_URL") // the listener never connects to Postgres
	}
	if service == Processor {
		env["ADMIN_TOKENS"] = st.AdminToken // the admin API and the console at /admin/
		maps.Copy(env, st.opts.ProcessorEnv)
	}
	if service == QueryAPI {
		// A development stack answers from test mode, which `stripe listen` forwards and the
		// scenarios send; Options.Env may say QUERYAPI_LIVEMODE=true.
		env["QUERYAPI_LIVEMODE"] = "false"
	}
	// What the caller set wins over what the stack generates (make run passes the contract
	// variables its user set through unchanged).
	for k, v := range st.opts.Env {
		if k != "HTTP_ADDR" {
			env[k] = v
		}
	}
	return env
}

// secret is the first entry of the caller's variable (without a "name:" or "live:"/"test:"
// prefix) when Options.Env sets it, else the generated secret kept in DataDir/file.
func (st *Stack) secret(variable, file, prefix string) (string, error) {
	var first string
	for entry := range strings.SplitSeq(st.opts.Env[variable], ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if variable == "STRIPE_WEBHOOK_SECRETS" {
			if mode, rest, ok := strings.Cut(entry, ":"); ok && (mode == "test" || mode == "live") {
				if mode == "live" {
					// A dev stack signs test-mode events: a test or unbound secret is preferred.
					if first == "" {
						first = rest
					}
					continue
				}
				entry = rest
			}
			return entry, nil
		}
		if _, token, ok := strings.Cut(entry, ":"); ok {
			entry = token
		}
		return entry, nil
	}
	if first != "" {
		return first, nil
	}
	return persistentSecret(filepath.Join(st.opts.DataDir, file), prefix)
}

// AddInstance starts one more instance of a service (Listener, Processor or QueryAPI), named
// name (such as "listener-2"), serving on addr, with the stack's configuration, and returns once
// it answers /readyz. Process(name) finds it; Stop stops it with the others.
func (st *Stack) AddInstance(ctx context.Context, service, name, addr string) (*Process, error) {
	return st.AddInstanceEnv(ctx, service, name, addr, nil)
}

// AddInstanceEnv is AddInstance with variables that override the stack's for this instance
// only (a query API on a standby gets its own DATABASE_URL, a listener one node's NATS_URL).
func (st *Stack) AddInstanceEnv(ctx context.Context, service, name, addr string, env map[string]string) (*Process, error) {
	all := st.serviceEnv(service, addr)
	maps.Copy(all, env)
	p, err := st.startProcess(ctx, service, name, all)
	if err != nil {
		return nil, err
	}
	if err := p.WaitReady(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// URL is the base URL of the process, such as http://127.0.0.1:8080.
func (p *Process) URL() string { return "http://" + dialAddr(p.env["HTTP_ADDR"]) }

// URL is the base URL of a service, such as http://127.0.0.1:8080.
func (st *Stack) URL(service string) string {
	addr := map[string]string{Listener: st.opts.ListenerAddr, QueryAPI: st.opts.QueryAPIAddr, Processor: st.opts.ProcessorAddr}[service]
	return "http://" + dialAddr(addr)
}

// Process returns the running process of a service, nil if none.
func (st *Stack) Process(service string) *Process {
	for _, p := range st.procs {
		if p.Name == service {
			return p
		}
	}
	return nil
}

// StartProcess starts (or restarts) one service's binary with the stack's options and env.
func (st *Stack) StartProcess(ctx context.Context, name string, env map[string]string) (*Process, error) {
	return st.startProcess(ctx, name, name, env)
}

// startProcess starts (or restarts) the binary of service as the process called name.
func (st *Stack) startProcess(_ context.Context, service, name string, env map[string]string) (*Process, error) {
	bin, err := filepath.Abs(filepath.Join(st.opts.BinDir, service))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make build` first)", bin, err)
	}
	cmd := exec.Command(bin) //nolint:noctx // our own binary; stopped by Stop, not by ctx
	if ns := env[Netns]; ns != "" {
		// ip execs the binary in the namespace: the process is the service itself.
		cmd = exec.Command("ip", "netns", "exec", ns, bin) //nolint:noctx // as above
	}
	cmd.Env = os.Environ()
	for k, v := range st.opts.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logw := st.log.For(name)
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{Name: name, service: service, cmd: cmd, env: env, done: make(chan struct{}), stack: st}
	go func() {
		p.err = cmd.Wait()
		_ = logw.Close()
		close(p.done)
	}()
	for i, old := range st.procs {
		if old.Name == name {
			st.procs = append(st.procs[:i], st.procs[i+1:]...)
			break
		}
	}
	st.procs = append(st.procs, p)
	return p, nil
}

// Stop sends SIGTERM to every service in reverse start order, waits for each to exit (SIGKILL
// after 20 s), then stops the embedded NATS server. It returns the first non-clean exit.
func (st *Stack) Stop() error {
	var first error
	for i := len(st.procs) - 1; i >= 0; i-- {
		if err := st.procs[i].Stop(20 * time.Second); err != nil && first == nil {
			first = err
		}
	}
	st.procs = nil
	if st.nats != nil {
		st.nats.Shutdown()
		st.nats.WaitForShutdown()
		st.nats = nil
	}
	return first
}

// Process is one running service binary.
type Process struct {
	Name    string // the service, or the instance's name given to AddInstance
	service string // the binary
	cmd     *exec.Cmd
	env     map[string]string
	done    chan struct{}
	err     error
	stack   *Stack
}

// WaitReady polls the service's /readyz until 200, the process exits, or the timeout.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration) error {
	url := "http://" + dialAddr(p.env["HTTP_ADDR"]) + "/readyz"
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// Ready only when the answer came from our own process: another process on the
				// port (a second stack) answers too, while ours failed to bind.
				ours, err := listensOn(p.Pid(), p.env["HTTP_ADDR"])
				if err != nil {
					return err
				}
				if ours {
					return nil
				}
				select {
				case <-p.done:
					return fmt.Errorf("%w: %s exited (%w) while %s answers from another process", ErrNotOurs, p.Name, p.err, url)
				case <-time.After(time.Second):
					// A process that has just bound its socket may not be listed yet.
					if ours, err := listensOn(p.Pid(), p.env["HTTP_ADDR"]); err == nil && ours {
						return nil
					}
					return fmt.Errorf("%w: %s answers, but not from %s (pid %d)", ErrNotOurs, url, p.Name, p.Pid())
				}
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %w", p.Name, p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s after %s", p.Name, url, timeout)
		}
	}
}

// Stop sends SIGTERM and waits for a clean exit; after grace it kills the process.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.exitErr()
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exitErr()
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s did not stop within %s and was killed", p.Name, grace)
	}
}

// Kill sends SIGKILL, as a crash would, and waits for the process to be gone.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Restart starts the same binary again with the same environment.
func (p *Process) Restart(ctx context.Context) (*Process, error) {
	return p.stack.startProcess(ctx, p.service, p.Name, p.env)
}

// Pid is the process id of the running binary (for /proc/<pid>/status and the like).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

func (p *Process) exitErr() error {
	if p.err != nil {
		return fmt.Errorf("%s: %w", p.Name, p.err)
	}
	return nil
}

// startNATS uses the server at NATS_URL when it answers with JetStream, else embeds one on
// that address with its store under DataDir/nats.
func (st *Stack) startNATS(ctx context.Context) error {
	st.NATSURL = st.opts.NATSURL
	if nc, err := nats.Connect(st.NATSURL, nats.Timeout(2*time.Second)); err == nil {
		defer nc.Close()
		if _, err := nc.RequestWithContext(ctx, "$JS.API.INFO", nil); err == nil {
			st.log.Printf("stack", "using NATS at %s", st.NATSURL)
			return nil
		}
		return fmt.Errorf("NATS at %s answers but has no JetStream: start it with -js", st.NATSURL)
	}
	u, err := url.Parse(strings.Split(st.NATSURL, ",")[0])
	if err != nil {
		return fmt.Errorf("NATS_URL: %w", err)
	}
	port := 4222
	if p := u.Port(); p != "" {
		if _, err := fmt.Sscan(p, &port); err != nil {
			return fmt.Errorf("NATS_URL port: %w", err)
		}
	}
	opts := &server.Options{
		ServerName: "tollgate-dev",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(st.opts.DataDir, "nats"),
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("embedded NATS did not start on 127.0.0.1:%d", port)
	}
	st.nats, st.EmbeddedNATS = srv, true
	st.NATSURL = srv.ClientURL()
	st.log.Printf("stack", "no NATS answered at %s: embedded JetStream server on %s, store %s",
		st.opts.NATSURL, st.NATSURL, opts.StoreDir)
	return nil
}

// EnsureDatabase connects to DATABASE_URL's server and creates the database when missing. It
// returns databaseURL unchanged; ErrPostgresUnreachable when the server does not answer.
func EnsureDatabase(ctx context.Context, databaseURL string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	admin := *u
	admin.Path = "/postgres"
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, admin.String())
	if err != nil {
		return "", fmt.Errorf("%w at %s (%w)\n\n  Install and start one:  sudo apt-get install postgresql && sudo pg_ctlcluster 15 main start\n  or with Docker:         docker compose up -d postgres   (then DATABASE_URL=postgres://postgres:tollgate@127.0.0.1:5432/tollgate?sslmode=disable)\n  or point DATABASE_URL at yours",
			ErrPostgresUnreachable, u.Redacted(), err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(cctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look up database %s: %w", name, err)
	}
	if !exists {
		if _, err := conn.Exec(cctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return databaseURL, nil
}

// persistentSecret reads a secret from path, or generates and stores one on first run.
func persistentSecret(path, prefix string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); strings.HasPrefix(s, prefix) {
			return s, nil
		}
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := prefix + hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("store %s: %w", path, err)
	}
	return s, nil
}

// dialAddr turns a listen address (":8080") into one to dial ("127.0.0.1:8080").
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// prefixWriter writes whole lines, each prefixed by a service name, to one writer.
type prefixWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// For returns a writer whose lines are prefixed with name. Close it when the writer is done.
func (p *prefixWriter) For(name string) io.WriteCloser {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			p.Printf(name, "%s", sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return pw
}

// Printf writes one line prefixed with name.
func (p *prefixWriter) Printf(name, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%-9s | "+format+"\n", append([]any{name}, args...)...)
}

// Printf writes a line of the stack's own to the log, prefixed "stack".
func (st *Stack) Printf(format string, args ...any) { st.log.Printf("stack", format, args...) }

// Exited is closed when any service exits; it carries the name of the first.
func (st *Stack) Exited() <-chan string {
	ch := make(chan string, 1)
	for _, p := range st.procs {
		go func() {
			<-p.done
			select {
			case ch <- p.Name:
			default:
			}
		}()
	}
	return ch
}
