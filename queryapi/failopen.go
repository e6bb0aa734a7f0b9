package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/pkg/failopen"

	"github.com/tollgate/tollgate/pkg/config"
)

// rowQuerier reads one row: a pool, a connection or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// switchStatus is what an instance knows of the fail-open switch.
type switchStatus struct {
	On bool
	// Since is when the switch last changed, zero before the first successful read.
	Since time.Time
	// Err is the error of the last read, nil when it succeeded. The last known state stays in
	// force while Postgres cannot be read.
	Err error
}

// failOpenSwitch follows the fail-open switch in Postgres: it reads the switch every interval
// and whenever poked (the switches trigger notifies), so a flip is followed within about a
// second even when notifications are lost. It is safe for concurrent use.
type failOpenSwitch struct {
	q         rowQuerier
	interval  time.Duration
	warnEvery time.Duration
	logger    *slog.Logger
	gauge     prometheus.Gauge
	kick      chan struct{}

	on     atomic.Bool // read on every request, so outside mu
	mu     sync.Mutex
	status switchStatus
}

func newFailOpenSwitch(q rowQuerier, interval, warnEvery time.Duration, logger *slog.Logger, gauge prometheus.Gauge) *failOpenSwitch {
	return &failOpenSwitch{q: q, interval: interval, warnEvery: warnEvery, logger: logger, gauge: gauge, kick: make(chan struct{}, 1)}
}

// On reports whether every answer must grant access.
func (f *failOpenSwitch) On() bool { return f.on.Load() }

// Status is the switch as last read, with the error of the last read.
func (f *failOpenSwitch) Status() switchStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// poke asks for a read now; it never blocks.
func (f *failOpenSwitch) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// refresh reads the switch once. A missing row counts as off.
func (f *failOpenSwitch) refresh(ctx context.Context) error {
	st, err := readFailOpen(ctx, f.q)
	if errors.Is(err, errNoSwitch) {
		st, err = switchStatus{}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.status.Err = err
		return err
	}
	was := f.status.On
	f.status = st
	f.on.Store(st.On)
	if st.On {
		f.gauge.Set(1)
	} else {
		f.gauge.Set(0)
	}
	switch {
	case st.On && !was:
		f.logger.Warn("fail-open is ON: every entitlement answer grants access", "since", st.Since)
	case !st.On && was:
		f.logger.Info("fail-open is off: answers come from the read model again", "since", st.Since)
	}
	return nil
}

// run follows the switch until ctx is done, and warns every warnEvery while it is on.
func (f *failOpenSwitch) run(ctx context.Context) {
	poll := time.NewTicker(f.interval)
	defer poll.Stop()
	warn := time.NewTicker(f.warnEvery)
	defer warn.Stop()
	failing := false // log the first failure and the recovery, not every second of an outage
	read := func() {
		rctx, cancel := context.WithTimeout(ctx, f.interval)
		defer cancel()
		err := f.refresh(rctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			failing = true
			f.logger.Error("cannot read the fail-open switch; keeping the last known state until Postgres answers",
				"err", err, "fail_open", f.On())
		case err == nil && failing:
			failing = false
			f.logger.Info("reading the fail-open switch again", "fail_open", f.On())
		}
	}
	read()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			read()
		case <-f.kick:
			read()
		case <-warn.C:
			if st := f.Status(); st.On {
				f.logger.Warn("fail-open is still ON: every entitlement answer grants access; turn it off with `queryapi fail-open off`",
					"since", st.Since, "for", time.Since(st.Since).Round(time.Second).String())
			}
		}
	}
}

// errNoSwitch means the switches table has no fail_open row (migrations not applied).
var errNoSwitch = failopen.ErrNoSwitch

// readFailOpen and setFailOpen go through pkg/failopen, which owns the switch's statements.
func readFailOpen(ctx context.Context, q rowQuerier) (switchStatus, error) {
	st, err := failopen.Read(ctx, q)
	return switchStatus{On: st.On, Since: st.Since}, err
}

func setFailOpen(ctx context.Context, q rowQuerier, on bool) (switchStatus, error) {
	st, err := failopen.Set(ctx, q, on)
	return switchStatus{On: st.On, Since: st.Since}, err
}

// failOpenCommand is `queryapi fail-open on|off|status`. It needs DATABASE_URL only, and a
// read-write session (unlike the server).
func failOpenCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "on" && args[0] != "off" && args[0] != "status") {
		return fmt.Errorf("fail-open takes one of on, off, status: %w", errUsage)
	}
	verb := args[0]
	databaseURL, err := config.LoadDatabase(getenv)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	var st switchStatus
	if verb == "status" {
		st, err = readFailOpen(ctx, conn)
	} else {
		st, err = setFailOpen(ctx, conn, verb == "on")
	}
	if err != nil {
		return err
	}
	since := st.Since.Format(time.RFC3339)
	switch {
	case verb == "status" && st.On:
		_, err = fmt.Fprintf(stdout, "fail-open is ON since %s: every /v1 answer grants access\n", since)
	case verb == "status":
		_, err = fmt.Fprintf(stdout, "fail-open is off since %s: answers come from the read model\n", since)
	case st.On:
		_, err = fmt.Fprintf(stdout, "fail-open is ON since %s: every /v1 answer grants access (premium: true, fail_open: true).\n"+
			"Running instances follow within 2 s. Turn it off with: queryapi fail-open off\n", since)
	default:
		_, err = fmt.Fprintf(stdout, "fail-open is off since %s: answers come from the read model again.\n"+
			"Running instances follow within 2 s.\n", since)
	}
	return err
}
