package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/testkit/freeport"
	"github.com/tollgate/tollgate/testkit/pgtest"
	"github.com/tollgate/tollgate/testkit/syncbuf"
	"github.com/tollgate/tollgate/testkit/wait"
)

// bundle is one make run started by the test, with what it printed.
type bundle struct {
	env    map[string]string
	stdout *syncbuf.Buffer
	log    *syncbuf.Buffer
	done   chan error
	cancel context.CancelFunc
}

// buildBinaries builds the three services into a temporary bin directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", bin+"/", "./listener", "./processor", "./queryapi")
	build.Dir, build.Env = filepath.Join("..", "..", ".."), append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build the services:\n%s", out)
	return bin
}

// freshDatabase is the URL of a database name no one uses, dropped after the test.
func freshDatabase(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("tollgate_run_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), pgtest.ServerURL())
		if err == nil {
			_, _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = conn.Close(context.Background())
		}
	})
	return pgtest.URLFor(t, name)
}

func addr(t *testing.T) string {
	t.Helper()
	p, err := freeport.Get()
	require.NoError(t, err)
	return "127.0.0.1:" + strconv.Itoa(p)
}

// start calls run as `make run` does, with env as the whole environment it reads.
func start(t *testing.T, env map[string]string) *bundle {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &bundle{env: env, stdout: &syncbuf.Buffer{}, log: &syncbuf.Buffer{}, done: make(chan error, 1), cancel: cancel}
	go func() { b.done <- run(ctx, func(k string) string { return env[k] }, b.stdout, b.log) }()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	return b
}

// running waits for the banner; it fails the test if run returns first.
func (b *bundle) running(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(b.stdout.String(), "Tollgate is running") {
		select {
		case err := <-b.done:
			b.done <- err // for the cleanup
			t.Fatalf("run returned before it was running: %v\n%s", err, b.log.String())
		case <-time.After(100 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "not running in time:\n%s", b.log.String())
	}
}

// refused waits for run to return and gives its error; it never printed the banner.
func (b *bundle) refused(t *testing.T) error {
	t.Helper()
	select {
	case err := <-b.done:
		b.done <- err // for the cleanup
		require.Error(t, err)
		require.NotContains(t, b.stdout.String(), "running")
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not refuse in time:\n%s\n%s", b.stdout.String(), b.log.String())
		return nil
	}
}

// childEnvs is the environment of each process the test process started that serves on one of
// addrs (HTTP_ADDR), keyed by that address.
func childEnvs(t *testing.T, addrs ...string) map[string]map[string]string {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	require.NoError(t, err)
	out := map[string]map[string]string{}
	for _, d := range dirs {
		stat, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		raw, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil {
			continue
		}
		env := map[string]string{}
		for kv := range bytes.SplitSeq(raw, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				env[k] = v
			}
		}
		for _, a := range addrs {
			if env["HTTP_ADDR"] == a {
				out[a] = env
			}
		}
	}
	return out
}

// One make run, then what a second checkout's make run may not do beside it.
func TestRun(t *testing.T) {
	t.Parallel()
	bin := buildBinaries(t)
	first := map[string]string{
		"BIN_DIR": bin, "DATA_DIR": filepath.Join(t.TempDir(), "first", ".data"),
		"LISTENER_ADDR": addr(t), "QUERYAPI_ADDR": addr(t), "PROCESSOR_ADDR": addr(t),
		"DATABASE_URL": freshDatabase(t),
		// Every variable the stack would otherwise generate, set by the user.
		"QUERYAPI_TOKENS":        "tok_mine_0123456789,tok_second_0123456789",
		"ADMIN_TOKENS":           "ops:adm_mine_0123456789abcdef",
		"QUERYAPI_LIVEMODE":      "true",
		"STRIPE_WEBHOOK_SECRETS": "whsec_mine,whsec_other",
		"PAST_DUE_GRANTS":        "false",
		"USER_ID_METADATA_KEY":   "app_user",
	}
	// NATS_URL unset: the first checkout's own embedded server.
	a := start(t, first)
	a.running(t)

	t.Run("contract variables pass through unchanged", func(t *testing.T) {
		envs := childEnvs(t, first["LISTENER_ADDR"], first["QUERYAPI_ADDR"], first["PROCESSOR_ADDR"])
		require.Len(t, envs, 3, "the three services are children of run")
		for _, k := range contractVariables() {
			v, set := first[k]
			if !set {
				continue
			}
			for a, env := range envs {
				require.Equal(t, v, env[k], "%s of the service on %s", k, a)
			}
		}
		stackEnv, err := os.ReadFile(filepath.Join(first["DATA_DIR"], "stack.env"))
		require.NoError(t, err)
		require.Contains(t, string(stackEnv), "QUERYAPI_TOKEN=tok_mine_0123456789\n")
		require.Contains(t, string(stackEnv), "ADMIN_TOKEN=adm_mine_0123456789abcdef\n")
		require.Contains(t, string(stackEnv), "STRIPE_WEBHOOK_SECRET=whsec_mine\n")

		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+first["QUERYAPI_ADDR"]+"/v1/users/u_1/entitlement", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer tok_second_0123456789")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "the user's own token is taken")
	})

	natsURL := func() string {
		b, err := os.ReadFile(filepath.Join(first["DATA_DIR"], "stack.env"))
		require.NoError(t, err)
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "NATS_URL="); ok {
				return v
			}
		}
		t.Fatal("no NATS_URL in stack.env")
		return ""
	}()
	second := func(t *testing.T, set map[string]string) map[string]string {
		t.Helper()
		env := map[string]string{
			"BIN_DIR": bin, "DATA_DIR": filepath.Join(t.TempDir(), "second", ".data"),
			"LISTENER_ADDR": addr(t), "QUERYAPI_ADDR": addr(t), "PROCESSOR_ADDR": addr(t),
			"DATABASE_URL": freshDatabase(t),
		}
		for k, v := range set {
			env[k] = v
		}
		return env
	}
	firstDir := filepath.Dir(first["DATA_DIR"])

	t.Run("another checkout may not share the database", func(t *testing.T) {
		err := start(t, second(t, map[string]string{"DATABASE_URL": first["DATABASE_URL"]})).refused(t)
		require.ErrorIs(t, err, errInUse)
		require.Contains(t, err.Error(), filepath.Base(firstDir))
	})

	t.Run("another checkout may not share the NATS server", func(t *testing.T) {
		err := start(t, second(t, map[string]string{"NATS_URL": natsURL})).refused(t)
		require.ErrorIs(t, err, errInUse)
		require.Contains(t, err.Error(), firstDir)
	})

	t.Run("the generated dev secret signs only test-mode events", func(t *testing.T) {
		env := second(t, nil)
		b := start(t, env)
		b.running(t)
		envs := childEnvs(t, env["LISTENER_ADDR"])
		require.Len(t, envs, 1)
		stackEnv, err := os.ReadFile(filepath.Join(env["DATA_DIR"], "stack.env"))
		require.NoError(t, err)
		var secret string
		for line := range strings.SplitSeq(string(stackEnv), "\n") {
			if v, ok := strings.CutPrefix(line, "STRIPE_WEBHOOK_SECRET="); ok {
				secret = v
			}
		}
		require.Regexp(t, `^whsec_`, secret)
		require.Equal(t, "test:"+secret, envs[env["LISTENER_ADDR"]]["STRIPE_WEBHOOK_SECRETS"])
	})

	t.Run("a taken port ends the start at once, naming it", func(t *testing.T) {
		// Another stack's listener answers /readyz on the port: it is still not ours.
		taken := addr(t)
		ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", taken)
		require.NoError(t, err)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}), ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })

		started := time.Now()
		err = start(t, second(t, map[string]string{"LISTENER_ADDR": taken})).refused(t)
		require.ErrorIs(t, err, stack.ErrPortTaken)
		require.Contains(t, err.Error(), taken)
		require.Contains(t, err.Error(), "LISTENER_ADDR")
		t.Logf("refused after %s: %v", time.Since(started), err)
	})

	// The first one is still running and stops cleanly.
	a.cancel()
	wait.For(t, time.Minute, "run returns", func() bool { return len(a.done) == 1 })
	require.NoError(t, <-a.done)
	a.done <- nil
}

// Two checkouts left to their defaults get different databases.
func TestCheckoutsGetTheirOwnDatabase(t *testing.T) {
	t.Parallel()
	one, err := newCheckout("/home/dev/tollgate/.data")
	require.NoError(t, err)
	two, err := newCheckout("/home/dev/work/tollgate/.data")
	require.NoError(t, err)
	require.NotEqual(t, one.databaseURL(), two.databaseURL())
	require.Regexp(t, `/tollgate_tollgate_[0-9a-f]{8}\?sslmode=disable$`, one.databaseURL())
	require.Equal(t, "/home/dev/tollgate", one.dir)
}
