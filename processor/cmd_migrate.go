package main

import (
	"fmt"
	"io"

	"github.com/tollgate/tollgate/processor/internal/pgpool"

	"github.com/tollgate/tollgate/migrations"
	"github.com/tollgate/tollgate/pkg/config"
)

func migrateCmd(getenv func(string) string, stdout io.Writer) error {
	url, err := config.LoadDatabase(getenv)
	if err != nil {
		return err
	}
	if err := migrations.Up(url); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	if err := pgpool.SchemaStatus(url); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "schema at version %d\n", migrations.Version)
	return err
}
