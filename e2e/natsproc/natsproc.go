// Package natsproc runs nats-server as a process of its own that a test can kill -9, freeze and
// start again on the same store and port, as happens to a real server, and that the end-to-end
// benchmark and soak measure against. The embedded server of natstest and stack cannot die that
// way: it shares the test's process.
//
// The binary is the nats-server this module requires, built from the module cache (Build or
// `make bin/nats-server`), with JetStream on, alone or as the nodes of a cluster (LaunchCluster).
// The crash tests run it with sync_interval: always, the setting the README tells operators to
// use: every write is fsynced before it is acknowledged, so a kill -9 loses nothing acknowledged.
package natsproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/testkit/freeport"
)

// readyTimeout bounds the wait for JetStream to answer after a (re)start, store recovery
// included.
const readyTimeout = 30 * time.Second

// Build compiles the nats-server module this module requires into dir and returns the binary's
// path. moduleDir is a directory of this module (the go command resolves the version there).
func Build(ctx context.Context, moduleDir, dir string) (string, error) {
	bin := filepath.Join(dir, "nats-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	cmd.Dir = moduleDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build nats-server: %w\n%s", err, out)
	}
	return bin, nil
}

// Options say how to run the server.
type Options struct {
	// Dir holds the config, the JetStream store and, without Log, the server's log file.
	Dir string
	// SyncAlways sets sync_interval: always (every write fsynced before it is acknowledged);
	// without it the server keeps its default, an fsync every 2 minutes.
	SyncAlways bool
	// Log receives the server's output; default Dir/nats-server.log.
	Log io.Writer
	// Port is the client port; 0 picks a free one.
	Port int
	// Name is the server_name; default tollgate-test. The nodes of a cluster need distinct names.
	Name string
	// Cluster, when set, makes the server a node of a JetStream cluster (see LaunchCluster).
	Cluster *Cluster
	// Host is the address it listens on (clients and routes); default 127.0.0.1.
	Host string
	// Netns, when set, runs the server in that network namespace (`ip netns exec`), where Host
	// is one of its addresses.
	Netns string
}

// Node is where one node of a cluster runs: its address and network namespace (see Options).
type Node struct {
	Host  string
	Netns string
}

// Cluster is the cluster block of one node.
type Cluster struct {
	Name   string   // the cluster's name, the same on every node
	Port   int      // this node's route port
	Routes []string // nats-route://host:port of every node (its own is ignored by the server)
}

// Server is a nats-server process. Its methods are not safe for concurrent use.
type Server struct {
	Port       int
	Name       string // server_name, as JetStream's stream info names a cluster's leader
	Host       string // the address it listens on
	SyncAlways bool
	netns      string
	bin        string
	dir        string // config, store and log
	logPath    string
	log        io.Writer
	cmd        *exec.Cmd
	done       chan struct{}
}

// Launch runs bin with JetStream on a free loopback port and returns once JetStream answers.
// The caller stops it with Stop or Kill.
func Launch(ctx context.Context, bin string, opts Options) (*Server, error) {
	s, err := configure(bin, opts)
	if err != nil {
		return nil, err
	}
	if err := s.Restart(ctx); err != nil {
		s.Kill()
		return nil, fmt.Errorf("natsproc: %w", err)
	}
	return s, nil
}

// configure writes the server's config file in opts.Dir.
func configure(bin string, opts Options) (*Server, error) {
	port := opts.Port
	if port == 0 {
		var err error
		if port, err = freeport.Get(); err != nil {
			return nil, fmt.Errorf("natsproc: %w", err)
		}
	}
	if opts.Name == "" {
		opts.Name = "tollgate-test"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("natsproc: %w", err)
	}
	s := &Server{Port: port, Name: opts.Name, Host: opts.Host, netns: opts.Netns, SyncAlways: opts.SyncAlways, bin: bin, dir: opts.Dir,
		logPath: filepath.Join(opts.Dir, "nats-server.log"), log: opts.Log}
	syncLine := ""
	if opts.SyncAlways {
		syncLine = "\n  sync_interval: always"
	}
	conf := fmt.Sprintf("listen: \"%s:%d\"\nserver_name: %q\nmax_payload: 1MB\njetstream {\n  store_dir: %q%s\n}\n",
		opts.Host, port, opts.Name, filepath.Join(opts.Dir, "store"), syncLine)
	if c := opts.Cluster; c != nil {
		routes := make([]string, len(c.Routes))
		for i, r := range c.Routes {
			routes[i] = fmt.Sprintf("%q", r)
		}
		conf += fmt.Sprintf("cluster {\n  name: %q\n  listen: \"%s:%d\"\n  routes: [%s]\n}\n",
			c.Name, opts.Host, c.Port, strings.Join(routes, ", "))
	}
	if err := os.WriteFile(s.confPath(), []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("natsproc: %w", err)
	}
	return s, nil
}

// LaunchCluster runs n servers of bin as one JetStream cluster on loopback (server names
// tollgate-1 … tollgate-n, each with its store in dir/<name>, routes to every node) and returns
// once JetStream answers on every node (a meta leader is elected). opts gives SyncAlways and
// Log; its Dir, Port, Name and Cluster are ignored. The caller stops the servers with Stop or
// Kill.
func LaunchCluster(ctx context.Context, bin, dir string, n int, opts Options) ([]*Server, error) {
	return LaunchClusterOn(ctx, bin, dir, make([]Node, n), opts)
}

// LaunchClusterOn is LaunchCluster with each node where nodes says (a zero Node is loopback in
// this namespace).
func LaunchClusterOn(ctx context.Context, bin, dir string, nodes []Node, opts Options) ([]*Server, error) {
	n := len(nodes)
	for i := range nodes {
		if nodes[i].Host == "" {
			nodes[i].Host = "127.0.0.1"
		}
	}
	routes := make([]string, n)
	ports := make([]int, n)
	for i := range n {
		var err error
		if ports[i], err = freeport.Get(); err != nil {
			return nil, fmt.Errorf("natsproc: %w", err)
		}
		routes[i] = fmt.Sprintf("nats-route://%s:%d", nodes[i].Host, ports[i])
	}
	servers := make([]*Server, 0, n)
	killAll := func() {
		for _, s := range servers {
			s.Kill()
		}
	}
	for i := range n {
		o := opts
		o.Name = fmt.Sprintf("tollgate-%d", i+1)
		o.Dir, o.Port = filepath.Join(dir, o.Name), 0
		o.Host, o.Netns = nodes[i].Host, nodes[i].Netns
		o.Cluster = &Cluster{Name: "tollgate", Port: ports[i], Routes: routes}
		s, err := configure(bin, o)
		if err != nil {
			killAll()
			return nil, err
		}
		// Started together: JetStream answers on none until a quorum of nodes runs.
		if err := s.start(); err != nil {
			killAll()
			return nil, fmt.Errorf("natsproc: %w", err)
		}
		servers = append(servers, s)
	}
	for _, s := range servers {
		if err := s.waitReady(ctx); err != nil {
			killAll()
			return nil, fmt.Errorf("natsproc: %w", err)
		}
	}
	return servers, nil
}

// StartCluster is LaunchCluster with sync_interval: always in a temporary directory of the
// test. t.Cleanup kills the servers; when the test failed their logs are printed.
func StartCluster(tb testing.TB, bin string, n int) []*Server {
	tb.Helper()
	return StartClusterOn(tb, bin, make([]Node, n))
}

// StartClusterOn is StartCluster with each node where nodes says.
func StartClusterOn(tb testing.TB, bin string, nodes []Node) []*Server {
	tb.Helper()
	servers, err := LaunchClusterOn(context.Background(), bin, tb.TempDir(), nodes, Options{SyncAlways: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, s := range servers {
			s.Kill()
			if tb.Failed() {
				tb.Logf("natsproc: log of nats-server %s on port %d:\n%s", s.Name, s.Port, s.logTail(3000))
			}
		}
	})
	return servers
}

// ClusterURL is the comma-separated client URLs of servers, as NATS_URL takes them.
func ClusterURL(servers []*Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// Start runs bin with JetStream and sync_interval: always, its store in a temporary directory
// of the test, on a free loopback port, and returns once JetStream answers. t.Cleanup kills it;
// when the test failed its log is printed.
func Start(tb testing.TB, bin string) *Server {
	tb.Helper()
	s, err := Launch(context.Background(), bin, Options{Dir: tb.TempDir(), SyncAlways: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Kill()
		if tb.Failed() {
			tb.Logf("natsproc: log of nats-server on port %d:\n%s", s.Port, s.logTail(3000))
		}
	})
	return s
}

// Version is what bin --version prints, such as "nats-server: v2.15.2".
func Version(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Pid is the server's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Stop ends the server cleanly (SIGTERM; SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.Thaw()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.Kill()
	}
}

func (s *Server) confPath() string { return filepath.Join(s.dir, "nats-server.conf") }

// URL is the server's client URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://%s:%d", s.Host, s.Port) }

// Restart starts the server (again) with the same config, store and port, and returns once
// JetStream answers. It fails when the server is running.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.start(); err != nil {
		return err
	}
	return s.waitReady(ctx)
}

// start starts the process without waiting for it to answer.
func (s *Server) start() error {
	if s.cmd != nil {
		select {
		case <-s.done:
		default:
			return errors.New("nats-server is running")
		}
	}
	cmd := exec.Command(s.bin, "-c", s.confPath()) //nolint:noctx // our own build; stopped by Kill
	if s.netns != "" {
		// ip execs the server in the namespace: the process is the server itself.
		cmd = exec.Command("ip", "netns", "exec", s.netns, s.bin, "-c", s.confPath()) //nolint:noctx // as above
	}
	if s.log != nil {
		cmd.Stdout, cmd.Stderr = s.log, s.log
	} else {
		logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		// The child process gets its own copy of the log descriptor.
		defer func() { _ = logf.Close() }()
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	// Killed with its parent if that dies without cleaning up (a test's timeout panic).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats-server: %w", err)
	}
	s.cmd, s.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.done)
	return nil
}

// waitReady polls until JetStream answers, the process exits or readyTimeout passed.
func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("nats-server exited at start:\n%s", s.logTail(2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server at %s: JetStream not ready in %s (%w):\n%s", s.URL(), readyTimeout, err, s.logTail(2000))
		}
	}
}

// ping asks JetStream for the account info.
func (s *Server) ping(ctx context.Context) error {
	nc, err := nats.Connect(s.URL(), nats.Timeout(time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, "$JS.API.INFO", nil)
	if err != nil {
		return err
	}
	// A cluster node answers with an error until it knows the meta leader.
	var info struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		return fmt.Errorf("$JS.API.INFO: %w", err)
	}
	if info.Error != nil {
		return fmt.Errorf("$JS.API.INFO: %s", info.Error.Description)
	}
	return nil
}

// Kill sends SIGKILL, as a crash would, and returns once the process is gone. Killing a dead
// server does nothing.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	s.Thaw() // a stopped process dies of SIGKILL too, but its children would not be reaped
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Freeze stops the process (SIGSTOP): connections stay open and nothing is answered until Thaw.
func (s *Server) Freeze() error { return s.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process (SIGCONT).
func (s *Server) Thaw() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// logTail is the end of the server's log, at most n bytes.
func (s *Server) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
