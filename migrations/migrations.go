// Package migrations holds Tollgate's Postgres schema as embedded SQL files and applies them
// with golang-migrate (iofs source, pgx v5 driver).
package migrations

import (
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5" // also registers database/sql's "pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

//go:embed *.sql
var files embed.FS

// Version is the schema version the code of this tree expects.
const Version = 18

// Up applies all pending migrations to the database at databaseURL (a postgres:// URL).
// It is safe to call concurrently from several processes: golang-migrate takes an advisory lock.
func Up(databaseURL string) error {
	m, err := open(databaseURL)
	if err != nil {
		return err
	}
	defer closeMigrate(m)
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate up: %w", err)
	}
	return nil
}

// Down reverts every migration. Data in the event store is lost; tests and operators only.
func Down(databaseURL string) error {
	m, err := open(databaseURL)
	if err != nil {
		return err
	}
	defer closeMigrate(m)
	if err := m.Down(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate down: %w", err)
	}
	return nil
}

// Current reports the applied schema version (0 when none) and whether it is dirty.
func Current(databaseURL string) (version uint, dirty bool, err error) {
	m, err := open(databaseURL)
	if err != nil {
		return 0, false, err
	}
	defer closeMigrate(m)
	v, d, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read schema version: %w", err)
	}
	return v, d, nil
}

func open(databaseURL string) (*migrate.Migrate, error) {
	src, err := iofs.New(files, ".")
	if err != nil {
		return nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	u, err := driverURL(databaseURL)
	if err != nil {
		return nil, err
	}
	// The database is opened here rather than by URL through golang-migrate: its pgx driver does
	// not close the *sql.DB it opened when it then fails to connect, leaking the pool and its
	// goroutine on every call while Postgres is down (a readiness probe calls Current every few
	// seconds).
	db, err := sql.Open("pgx/v5", u)
	if err != nil {
		return nil, fmt.Errorf("connect for migrations: %w", err)
	}
	drv, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect for migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		_ = drv.Close() // closes db too
		return nil, fmt.Errorf("connect for migrations: %w", err)
	}
	return m, nil
}

// driverURL checks that databaseURL is a postgres:// URL and returns it in the form the pgx
// database/sql driver opens, without golang-migrate's own x-… parameters.
func driverURL(databaseURL string) (string, error) {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "postgres", "postgresql", "pgx5":
		u.Scheme = "postgres"
	default:
		return "", fmt.Errorf("database URL scheme %q: want postgres://", u.Scheme)
	}
	return migrate.FilterCustomQuery(u).String(), nil
}

func closeMigrate(m *migrate.Migrate) {
	// Close errors on teardown carry nothing an operator can act on.
	_, _ = m.Close()
}

// Files is the embedded SQL, for tools that need to see the migrations themselves.
func Files() fs.FS { return files }
