package stack

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A process that never binds its port is not ready, though another process answers /readyz
// there (a second stack on the same ports).
func TestWaitReadyWantsItsOwnProcess(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	bin := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bin, Listener), []byte("#!/bin/sh\nexec sleep 60\n"), 0o700))
	st := &Stack{opts: Options{BinDir: bin}, log: &prefixWriter{w: io.Discard}}
	p, err := st.StartProcess(t.Context(), Listener, map[string]string{"HTTP_ADDR": ln.Addr().String()})
	require.NoError(t, err)
	t.Cleanup(p.Kill)

	err = p.WaitReady(t.Context(), 30*time.Second)
	require.ErrorIs(t, err, ErrNotOurs)
}

// The process itself answering is ready.
func TestListensOnFindsTheProcessSocket(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	ours, err := listensOn(os.Getpid(), ln.Addr().String())
	require.NoError(t, err)
	require.True(t, ours)

	other, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := other.Addr().String()
	require.NoError(t, other.Close())
	ours, err = listensOn(os.Getpid(), addr)
	require.NoError(t, err)
	require.False(t, ours)
}
