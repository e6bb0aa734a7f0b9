package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tollgate/tollgate/processor/internal/cli"
	"github.com/tollgate/tollgate/processor/internal/operate"
)

func replayCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o operate.ReplayOptions
	fs.StringVar(&o.Customer, "customer", "", "re-derive this customer `ID` only")
	fs.BoolVar(&o.All, "all", false, "re-derive every customer")
	fs.Usage = func() {
		_, _ = fmt.Fprintln(stderr, "Usage: processor replay --customer ID | --all")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: replay: %w", cli.ErrUsage, err)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: replay takes no positional arguments, got %q", cli.ErrUsage, strings.Join(fs.Args(), " "))
	case (o.Customer == "") == !o.All:
		fs.Usage()
		return fmt.Errorf("%w: replay needs exactly one of --customer ID or --all", cli.ErrUsage)
	}
	deps, err := cli.Open(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer deps.Pool.Close()
	o.PageSize, o.ProgressEvery = 500, 2*time.Second
	return operate.Replay(ctx, deps.Pool, deps.Proj, o, stdout, stderr)
}
