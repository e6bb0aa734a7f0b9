// Package pgtest gives each test a fresh, migrated Postgres database and drops it afterwards.
// It fails the test, never skips it, when Postgres cannot be reached. Test code only.
//
// The server is TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres). The
// schema is migrated once into a template database named after a hash of the migrations, and
// each test clones it with CREATE DATABASE ... TEMPLATE, which takes milliseconds.
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tollgate/tollgate/migrations"
)

// DefaultServerURL is used when TEST_DATABASE_URL is unset.
const DefaultServerURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var counter atomic.Int64 //nolint:gochecknoglobals // unique names within one test binary

// DB is a fresh database for one test.
type DB struct {
	URL  string
	Name string
	Pool *pgxpool.Pool
}

// New creates a database with the current schema, dropped in t.Cleanup.
func New(tb testing.TB) *DB {
	tb.Helper()
	return create(tb, ensureTemplate(tb))
}

// NewEmpty creates a database with no schema at all (for migration tests), dropped in t.Cleanup.
func NewEmpty(tb testing.TB) *DB {
	tb.Helper()
	return create(tb, "template0")
}

// ServerURL is the admin URL of the Postgres server tests use.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultServerURL
}

// URLFor is the server URL with its database replaced by name.
func URLFor(tb testing.TB, name string) string {
	tb.Helper()
	u, err := url.Parse(ServerURL())
	if err != nil {
		tb.Fatalf("pgtest: TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

func admin(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		tb.Fatalf("pgtest: Postgres at %s is not reachable (start it, or set TEST_DATABASE_URL): %v", ServerURL(), err)
	}
	return conn
}

func create(tb testing.TB, template string) *DB {
	tb.Helper()
	name := fmt.Sprintf("tollgate_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, counter.Add(1))
	conn := admin(tb)
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, template)); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	db := &DB{URL: URLFor(tb, name), Name: name}
	tb.Cleanup(func() {
		if db.Pool != nil {
			db.Pool.Close()
		}
		c := admin(tb)
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	pool, err := pgxpool.New(ctx, db.URL)
	if err != nil {
		tb.Fatalf("pgtest: open pool: %v", err)
	}
	db.Pool = pool
	return db
}

// ensureTemplate makes sure a migrated template for the current migrations exists. Test
// binaries of several packages run at once, so creation is serialized by an advisory lock.
func ensureTemplate(tb testing.TB) string {
	tb.Helper()
	name := "tollgate_tmpl_" + migrationsHash(tb)
	conn := admin(tb)
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(727274)"); err != nil {
		tb.Fatalf("pgtest: lock: %v", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock(727274)") }()

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", name).Scan(&exists); err != nil {
		tb.Fatalf("pgtest: look up template: %v", err)
	}
	if exists {
		return name
	}
	// A build that died halfway may have left a non-template database of that name.
	if _, err := conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
		tb.Fatalf("pgtest: drop stale template: %v", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE template0", name)); err != nil {
		tb.Fatalf("pgtest: create template: %v", err)
	}
	if err := migrations.Up(URLFor(tb, name)); err != nil {
		tb.Fatalf("pgtest: migrate template: %v", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH is_template true", name)); err != nil {
		tb.Fatalf("pgtest: mark template: %v", err)
	}
	return name
}

func migrationsHash(tb testing.TB) string {
	tb.Helper()
	h := sha256.New()
	err := fs.WalkDir(migrations.Files(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.Files(), path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	if err != nil {
		tb.Fatalf("pgtest: hash migrations: %v", err)
	}
	return strings.ToLower(hex.EncodeToString(h.Sum(nil))[:12])
}

// Conn is a connection of its own to db with the given run-time parameters (for example
// enable_seqscan=off, as the services' pools set it, for a plan test), released in t.Cleanup.
func Conn(tb testing.TB, db *DB, params map[string]string) *pgxpool.Conn {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		tb.Fatalf("pgtest: parse %s: %v", db.URL, err)
	}
	for k, v := range params {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("pgtest: open pool: %v", err)
	}
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		pool.Close()
		tb.Fatalf("pgtest: connect: %v", err)
	}
	tb.Cleanup(func() {
		conn.Release()
		pool.Close()
	})
	return conn
}

// Querier is what Explain reads through: a connection, a pool or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Explain returns the plan Postgres would run for statement (EXPLAIN <statement>) on q, one
// line per node.
func Explain(tb testing.TB, q Querier, statement string) string {
	tb.Helper()
	rows, err := q.Query(context.Background(), "EXPLAIN "+statement)
	if err != nil {
		tb.Fatalf("pgtest: EXPLAIN %s: %v", statement, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("pgtest: EXPLAIN %s: %v", statement, err)
	}
	return strings.Join(lines, "\n")
}
