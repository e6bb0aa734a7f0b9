// Package rig sets up what the end-to-end benchmark and soak run against: a nats-server built
// from the module cache running as its own process, a fresh Postgres database, and Tollgate's
// three binaries from bin/ on free ports (through package stack). It also reads the figures the
// services expose on /metrics, a process's memory, and describes the machine.
package rig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/e2e/natsproc"
	"github.com/tollgate/tollgate/e2e/stack"
	"github.com/tollgate/tollgate/testkit/freeport"
)

// Options say how to set the rig up.
type Options struct {
	BinDir      string    // listener, processor, queryapi and nats-server; default "bin"
	WorkDir     string    // NATS store, secrets; removed by Close
	DatabaseURL string    // the server to create the database on; default DATABASE_URL's or the contract's
	DBPrefix    string    // the database is named DBPrefix + random hex
	SyncAlways  bool      // NATS sync_interval: always
	Log         io.Writer // services' and nats-server's logs
}

// Rig is a running setup. Close stops everything and drops the database.
type Rig struct {
	Stack       *stack.Stack
	NATS        *natsproc.Server
	NATSVersion string // as nats-server --version prints it
	DatabaseURL string // the fresh database's
	opts        Options
	adminURL    string
	dbName      string
}

// Start sets the rig up; on error it undoes what it did.
func Start(ctx context.Context, opts Options) (r *Rig, err error) {
	if opts.BinDir == "" {
		opts.BinDir = "bin"
	}
	if opts.DatabaseURL == "" {
		opts.DatabaseURL = "postgres://postgres@127.0.0.1:5432/tollgate?sslmode=disable"
	}
	r = &Rig{opts: opts}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	natsBin := filepath.Join(opts.BinDir, "nats-server")
	if r.NATSVersion, err = natsproc.Version(ctx, natsBin); err != nil {
		return r, fmt.Errorf("%w (make bin/nats-server builds it)", err)
	}
	r.NATS, err = natsproc.Launch(ctx, natsBin, natsproc.Options{
		Dir: filepath.Join(opts.WorkDir, "nats"), SyncAlways: opts.SyncAlways, Log: opts.Log})
	if err != nil {
		return r, err
	}
	u, err := url.Parse(opts.DatabaseURL)
	if err != nil {
		return r, fmt.Errorf("DATABASE_URL: %w", err)
	}
	r.dbName = opts.DBPrefix + randomHex(6)
	admin := *u
	admin.Path = "/postgres"
	r.adminURL = admin.String()
	u.Path = "/" + r.dbName
	r.DatabaseURL = u.String()

	addrs := make([]string, 3)
	for i := range addrs {
		if addrs[i], err = FreeAddr(); err != nil {
			return r, err
		}
	}
	r.Stack, err = stack.Start(ctx, stack.Options{
		BinDir: opts.BinDir, DataDir: filepath.Join(opts.WorkDir, "data"),
		NATSURL: r.NATS.URL(), DatabaseURL: r.DatabaseURL,
		ListenerAddr: addrs[0], QueryAPIAddr: addrs[1], ProcessorAddr: addrs[2],
		Log: opts.Log,
	})
	return r, err
}

// Close stops the services and nats-server, drops the database and removes WorkDir.
func (r *Rig) Close() error {
	var first error
	if r.Stack != nil {
		first = r.Stack.Stop()
	}
	if r.NATS != nil {
		r.NATS.Stop()
	}
	if r.dbName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, r.adminURL); err == nil {
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{r.dbName}.Sanitize()+" WITH (FORCE)"); err != nil && first == nil {
				first = fmt.Errorf("drop database %s: %w", r.dbName, err)
			}
			_ = conn.Close(ctx)
		}
	}
	if r.opts.WorkDir != "" {
		_ = os.RemoveAll(r.opts.WorkDir)
	}
	return first
}

// FreeAddr returns a loopback address nothing listens on right now (freeport.Addr).
func FreeAddr() (string, error) { return freeport.Addr() }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
