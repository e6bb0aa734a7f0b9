package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/testkit/syncbuf"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/freeport"
	"github.com/tollgate/tollgate/testkit/pgtest"
)

// freePort returns a loopback port nothing listens on right now (freeport.Get).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Get()
	require.NoError(t, err)
	return p
}

// TestQuickstart runs the README's quickstart as a new user would: `make run` in the background
// (on free ports, NATS embedded because none answers at NATS_URL, a database it must create),
// then `make demo`, which sees premium turn on and off, then Ctrl-C, after which nothing is left.
func TestQuickstart(t *testing.T) {
	root := repoRoot(t)
	dbName := fmt.Sprintf("tollgate_quickstart_%d", time.Now().UnixNano())
	dbURL := pgtest.URLFor(t, dbName)
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), pgtest.ServerURL())
		if err == nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+dbName+" WITH (FORCE)")
			conn.Close(context.Background())
		}
	})
	ports := map[string]int{"listener": freePort(t), "queryapi": freePort(t), "processor": freePort(t), "nats": freePort(t)}
	dataDir := t.TempDir()
	env := append(os.Environ(),
		"DATA_DIR="+dataDir,
		"DATABASE_URL="+dbURL,
		fmt.Sprintf("NATS_URL=nats://127.0.0.1:%d", ports["nats"]),
		fmt.Sprintf("LISTENER_ADDR=127.0.0.1:%d", ports["listener"]),
		fmt.Sprintf("QUERYAPI_ADDR=127.0.0.1:%d", ports["queryapi"]),
		fmt.Sprintf("PROCESSOR_ADDR=127.0.0.1:%d", ports["processor"]),
	)

	var out syncbuf.Buffer
	run := exec.CommandContext(t.Context(), "make", "--no-print-directory", "run")
	run.Dir, run.Env, run.Stdout, run.Stderr = root, env, &out, &out
	run.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches the whole group
	require.NoError(t, run.Start())
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-run.Process.Pid, syscall.SIGKILL)
	})

	deadline := time.Now().Add(3 * time.Minute) // includes `make build` on a cold cache
	for !strings.Contains(out.String(), "Tollgate is running") {
		select {
		case err := <-done:
			t.Fatalf("make run exited early (%v):\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "make run not ready in time:\n%s", out.String())
	}
	require.Contains(t, out.String(), "embedded JetStream server", "no NATS at NATS_URL: embedded")
	require.Contains(t, out.String(), "stripe listen --forward-to")
	require.Contains(t, out.String(), "curl -s -H 'Authorization: Bearer tg_dev_")
	require.Regexp(t, `(?m)^processor +\| `, out.String(), "log lines prefixed by service")

	demo := exec.CommandContext(t.Context(), "make", "--no-print-directory", "demo")
	demo.Dir, demo.Env = root, env
	b, err := demo.CombinedOutput()
	require.NoError(t, err, "make demo:\n%s\n--- make run:\n%s", b, out.String())
	require.Regexp(t, `first invoice paid: active.*\n\s+premium=true\s+status=active`, string(b))
	require.Regexp(t, `canceled.*\n\s+premium=false\s+status=canceled`, string(b))

	// Ctrl-C: SIGINT to the foreground process group, as a terminal sends it.
	require.NoError(t, syscall.Kill(-run.Process.Pid, syscall.SIGINT))
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("make run did not stop after Ctrl-C:\n%s", out.String())
	}
	require.Contains(t, out.String(), "stopped cleanly")
	for name, port := range ports {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
		}
		require.Error(t, err, "%s still listens on %d after Ctrl-C", name, port)
	}
	require.Empty(t, processesWithEnv(t, "DATA_DIR="+dataDir), "processes of the stack left running")
}

// processesWithEnv lists the pids whose environment holds entry: everything `make run` started
// inherits it.
func processesWithEnv(t *testing.T, entry string) []string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []string
	for _, d := range dirs {
		b, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil {
			continue // not a process, or gone
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == entry {
				pids = append(pids, d.Name())
			}
		}
	}
	return pids
}
