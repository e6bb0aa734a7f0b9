// Package pgcluster runs a private, throwaway PostgreSQL cluster for one test: initdb into a
// temporary directory, a postgres server on a free loopback port with trust authentication,
// and a way to stop it as a crash would and start it again on the same data and port. The crash
// tests stop Postgres under traffic; the machine's shared server must stay up for everyone else.
//
// initdb and postgres refuse to run as root. Under root (as CI runs) they run as the system
// user postgres, on a directory given to that user; otherwise they run as the current user.
// The binaries are found in $PG_BINDIR, else in the newest /usr/lib/postgresql/<version>/bin
// (Debian's layout), else on PATH. A missing binary fails the test: it never skips.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/testkit/freeport"
)

// readyTimeout bounds the wait for a started server to accept connections (crash recovery
// included).
const readyTimeout = 60 * time.Second

// Cluster is a running private cluster. Its methods are not safe for concurrent use.
type Cluster struct {
	Port    int    // the loopback TCP port it listens on
	dir     string // owns everything: data, socket, log
	binDir  string
	cred    *syscall.Credential // nil: run as the current user
	logPath string
	opts    Options
	cmd     *exec.Cmd
	done    chan struct{}
}

// Options change how a cluster runs; the zero value is a lone server on loopback.
type Options struct {
	// Settings are extra server settings, name=value (postgres -c), such as
	// synchronous_standby_names=standby.
	Settings []string
	// Listen are addresses to listen on besides 127.0.0.1 (an address of a bridge that processes
	// in network namespaces reach); each gets a trust line in pg_hba.conf for its /24.
	Listen []string
}

// Start creates and starts a cluster for the test. t.Cleanup stops it and removes its
// directory, also when the test failed; then the server's log is printed.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	return StartWith(tb, Options{})
}

// StartWith is Start with options.
func StartWith(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	c, err := start(opts)
	return started(tb, c, err)
}

// started registers c's cleanup and fails the test on err.
func started(tb testing.TB, c *Cluster, err error) *Cluster {
	tb.Helper()
	if c != nil {
		tb.Cleanup(func() {
			c.Stop()
			if tb.Failed() {
				tb.Logf("pgcluster: log of the private Postgres on port %d:\n%s", c.Port, c.logTail(4000))
			}
			_ = os.RemoveAll(c.dir)
		})
	}
	if err != nil {
		tb.Fatalf("pgcluster: %v", err)
	}
	return c
}

func start(opts Options) (*Cluster, error) {
	c, err := newCluster(opts)
	if err != nil {
		return c, err
	}
	// -N: no fsync of the new files; the cluster lives for one test.
	initdb := c.command("initdb", "-D", c.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N")
	if out, err := initdb.CombinedOutput(); err != nil {
		return c, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := c.allowListen(); err != nil {
		return c, err
	}
	return c, c.Restart(context.Background())
}

// newCluster makes the cluster's directory, owned by the user that runs the server, and picks
// its port.
func newCluster(opts Options) (*Cluster, error) {
	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tollgate-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, binDir: binDir, logPath: filepath.Join(dir, "postgres.log"), opts: opts}
	if os.Geteuid() == 0 {
		if c.cred, err = postgresUser(); err != nil {
			return c, err
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "socket"), 0o700); err != nil {
		return c, err
	}
	if c.cred != nil {
		for _, p := range []string{dir, filepath.Join(dir, "socket")} {
			if err := os.Chown(p, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return c, fmt.Errorf("give %s to user postgres: %w", p, err)
			}
		}
	}
	c.Port, err = freeport.Get()
	return c, err
}

// allowListen adds a trust line to pg_hba.conf for the /24 of each of opts.Listen.
func (c *Cluster) allowListen() error {
	var lines string
	for _, a := range c.opts.Listen {
		ip := net.ParseIP(a).To4()
		if ip == nil {
			return fmt.Errorf("listen address %q is not IPv4", a)
		}
		lines += fmt.Sprintf("host all all %s/24 trust\nhost replication all %s/24 trust\n", ip.Mask(net.CIDRMask(24, 32)), ip.Mask(net.CIDRMask(24, 32)))
	}
	if lines == "" {
		return nil
	}
	f, err := os.OpenFile(filepath.Join(c.dataDir(), "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(lines)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// StartStandby makes a hot standby of primary (pg_basebackup of its data, streaming replication
// from it under the application_name name, which synchronous_standby_names on the primary may
// list) and starts it with opts. t.Cleanup stops it as Start's does.
func StartStandby(tb testing.TB, primary *Cluster, name string, opts Options) *Cluster {
	tb.Helper()
	c, err := newCluster(opts)
	if err == nil {
		err = c.basebackup(primary, name)
	}
	if err == nil {
		err = c.Restart(context.Background())
	}
	return started(tb, c, err)
}

func (c *Cluster) basebackup(primary *Cluster, name string) error {
	bb := c.command("pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", c.dataDir(), "-X", "stream", "--checkpoint=fast", "--no-sync")
	if out, err := bb.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup: %w\n%s", err, out)
	}
	// standby.signal makes it a standby; primary_conninfo names it to the primary.
	conf := fmt.Sprintf("primary_conninfo = 'host=127.0.0.1 port=%d user=postgres application_name=%s'\n", primary.Port, name)
	for path, text := range map[string]string{"standby.signal": "", "postgresql.auto.conf": conf} {
		f, err := os.OpenFile(filepath.Join(c.dataDir(), path), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = f.WriteString(text)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if c.cred != nil {
			if err := os.Chown(filepath.Join(c.dataDir(), path), int(c.cred.Uid), int(c.cred.Gid)); err != nil {
				return err
			}
		}
	}
	return c.allowListen()
}

// Promote ends the standby's recovery (pg_promote) and returns once it accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if !ok {
		return errors.New("promote: pg_promote did not finish in 60 s")
	}
	return nil
}

// WalReceiverPid is the process id of the standby's walreceiver (0 when none runs).
func (c *Cluster) WalReceiverPid(ctx context.Context) (int, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close(ctx) }()
	var pid int
	err = conn.QueryRow(ctx, "SELECT coalesce((SELECT pid FROM pg_stat_wal_receiver), 0)").Scan(&pid)
	return pid, err
}

// Kill kills every process of the server with SIGKILL at once (kill -9 of the postmaster and
// its backends, as a machine lost would), without crash recovery's chance to run, and returns
// once they are gone.
func (c *Cluster) Kill() {
	if c.cmd == nil {
		return
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.done
}

// BinDir is the directory holding initdb and postgres.
func BinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		return d, nil
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(versions, func(a, b string) int { return versionOf(a) - versionOf(b) })
	if len(versions) > 0 {
		return filepath.Dir(versions[len(versions)-1]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries not found (no /usr/lib/postgresql/<version>/bin/initdb, " +
		"no initdb on PATH, PG_BINDIR unset): install the postgresql package (.ci/run does)")
}

// versionOf reads the major version out of /usr/lib/postgresql/<version>/bin/initdb.
func versionOf(initdb string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return v
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, where initdb refuses to run, and no user postgres to run it as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func (c *Cluster) dataDir() string { return filepath.Join(c.dir, "data") }

// command is one of the cluster's binaries, run as the cluster's user.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...) //nolint:noctx // Postgres's own binaries; stopped by Stop
	cmd.Dir = c.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Setpgid: true}
	return cmd
}

// URL is the connection URL of database db on the cluster, as user postgres.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// Restart starts the server (again) on the same data directory and port and returns once it
// accepts connections, crash recovery done. It fails when the server is running.
func (c *Cluster) Restart(ctx context.Context) error {
	if c.cmd != nil {
		select {
		case <-c.done:
		default:
			return errors.New("postgres is running")
		}
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// The child process gets its own copy of the log descriptor.
	defer func() { _ = logf.Close() }()
	// fsync=off: an immediate shutdown loses nothing the OS has (only a power loss would), and
	// the tests run on a shared 2-core machine.
	args := []string{"-D", c.dataDir(), "-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=" + strings.Join(append([]string{"127.0.0.1"}, c.opts.Listen...), ","),
		"-k", filepath.Join(c.dir, "socket"),
		"-c", "fsync=off", "-c", "max_connections=100", "-c", "shared_buffers=32MB"}
	for _, set := range c.opts.Settings {
		args = append(args, "-c", set)
	}
	cmd := c.command("postgres", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// An immediate shutdown if the test binary dies without its cleanup (timeout panic).
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(c.done)

	deadline := time.Now().Add(readyTimeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, c.URL("postgres"))
		if err == nil {
			err = conn.Ping(cctx)
			_ = conn.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited at start:\n%s", c.logTail(2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on port %d not ready in %s (%w):\n%s", c.Port, readyTimeout, err, c.logTail(2000))
		}
	}
}

// Stop shuts the server down the way a crash would: an immediate shutdown (SIGQUIT to the
// postmaster, as pg_ctl stop -m immediate sends) ends every backend at once without a
// checkpoint, so the next start runs crash recovery. It returns once every process is gone;
// stopping a stopped cluster does nothing.
func (c *Cluster) Stop() {
	if c.cmd == nil {
		return
	}
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	// The postmaster exits after its children; a straggler of the group is killed for good.
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
}

// logTail is the end of the server's log, at most n bytes.
func (c *Cluster) logTail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
