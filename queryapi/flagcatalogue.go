package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tollgate/tollgate/pkg/backoff"
	"github.com/tollgate/tollgate/pkg/catalogue"
)

// catalogueChannel is the channel the flag catalogue's trigger notifies on (migrations/000013).
const catalogueChannel = "tollgate_catalogue"

// flagCatalogue follows the flag catalogue the processor writes: it reads it whole every
// interval and whenever poked (the catalogue's trigger notifies, and the LISTEN session pokes
// once it is established, for what changed while it was down), like the fail-open switch. The
// catalogue is small (the names of PLANS_FILE and of grants), so a read costs one short query.
// It is safe for concurrent use.
type flagCatalogue struct {
	q        catalogue.Querier
	interval time.Duration
	timeout  time.Duration
	logger   *slog.Logger
	kick     chan struct{}
	cur      atomic.Pointer[catalogue.Catalogue] // nil until the first read succeeds
}

func newFlagCatalogue(q catalogue.Querier, interval, timeout time.Duration, logger *slog.Logger) *flagCatalogue {
	return &flagCatalogue{q: q, interval: interval, timeout: timeout, logger: logger, kick: make(chan struct{}, 1)}
}

// current is the catalogue as last read; ok is false before the first read succeeded.
func (f *flagCatalogue) current() (c *catalogue.Catalogue, ok bool) {
	c = f.cur.Load()
	return c, c != nil
}

// poke asks for a read now; it never blocks.
func (f *flagCatalogue) poke() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// refresh reads the catalogue once; on an error the last one read stays in force.
func (f *flagCatalogue) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c, err := catalogue.Load(ctx, f.q)
	if err != nil {
		return err
	}
	f.cur.Store(&c)
	return nil
}

// run follows the catalogue until ctx is done. A failed read is retried with backoff (up to the
// interval) rather than at the next poll: a change it missed must not wait for the poll.
func (f *flagCatalogue) run(ctx context.Context) {
	retry := backoff.Policy{Base: 100 * time.Millisecond, Max: f.interval}
	failures := 0          // log the first failure and the recovery, not every read of an outage
	_, skip := f.current() // read at start already (startApp): no second read at once
	for {
		var err error
		if !skip {
			err = f.refresh(ctx)
		}
		skip = false
		switch {
		case err != nil && failures == 0 && ctx.Err() == nil:
			_, known := f.current()
			f.logger.Error("cannot read the flag catalogue; keeping the last one read until Postgres answers",
				"err", err, "known", known)
		case err == nil && failures > 0:
			f.logger.Info("reading the flag catalogue again")
		}
		wait := f.interval
		if err != nil {
			failures++
			wait = retry.Delay(failures)
		} else {
			failures = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-f.kick:
			t.Stop()
		}
	}
}
