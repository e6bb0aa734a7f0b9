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
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start creates and starts a cluster for the test. t.Cleanup stops it and removes its
// directory, also when the test failed; then the server's log is printed.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := start()
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

func start() (*Cluster, error) {
	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tollgate-pg-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, binDir: binDir, logPath: filepath.Join(dir, "postgres.log")}
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
	// -N: no fsync of the new files; the cluster lives for one test.
	initdb := c.command("initdb", "-D", c.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N")
	if out, err := initdb.CombinedOutput(); err != nil {
		return c, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if c.Port, err = freeport.Get(); err != nil {
		return c, err
	}
	return c, c.Restart(context.Background())
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
	cmd := c.command("postgres", "-D", c.dataDir(), "-p", strconv.Itoa(c.Port),
		"-c", "listen_addresses=127.0.0.1", "-k", filepath.Join(c.dir, "socket"),
		"-c", "fsync=off", "-c", "max_connections=100", "-c", "shared_buffers=32MB")
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
