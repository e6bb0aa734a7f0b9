// Command queryapi answers "is this user premium?" from the read model the processor keeps in
// Postgres. It only reads: every session it opens is read-only. See README.md.
//
//	queryapi                          serve HTTP on HTTP_ADDR
//	queryapi fail-open on|off|status  the operator switch (read-write connection to DATABASE_URL)
//	queryapi healthcheck              ask this process's own /readyz (for distroless images)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "queryapi:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errUsage marks a command line the program does not understand (exit status 2).
var errUsage = errors.New("usage: queryapi [fail-open on|off|status | healthcheck]")

// run is the whole program: args[0] is the program name, args[1:] the command.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return serve(ctx, getenv, stderr)
	}
	switch args[1] {
	case "fail-open":
		return failOpenCommand(ctx, args[2:], getenv, stdout)
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "help", "-h", "--help":
		_, err := fmt.Fprintln(stdout, errUsage.Error())
		return err
	default:
		return fmt.Errorf("unknown command %q: %w", args[1], errUsage)
	}
}
