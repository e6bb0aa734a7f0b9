// Package service is the one lifecycle of the processor's background work, in the shape of
// river's start/stop services: serve lists its services, Group.Start runs each in a goroutine of its
// own until the context is done, and Wait returns once all of them returned. The periodic ones
// share one loop, Loop (or Every), instead of each writing its own ticker.
package service

import (
	"context"
	"sync"
	"time"
)

// Service is one piece of background work: Run works until ctx is done, then returns.
type Service struct {
	Name string
	Run  func(ctx context.Context)
}

// Group is a set of started services; the zero value is an empty group.
type Group struct {
	wg sync.WaitGroup
}

// Start runs each service in a goroutine of its own until ctx is done.
func (g *Group) Start(ctx context.Context, services ...Service) {
	for _, s := range services {
		g.wg.Go(func() { s.Run(ctx) })
	}
}

// Wait returns once every service of the group returned.
func (g *Group) Wait() {
	g.wg.Wait()
}

// Next says what a loop does after a call of its function.
type Next int

const (
	// Wait for the interval (or a wake-up) before the next call.
	Wait Next = iota
	// Again calls the function again at once: more work is due.
	Again
	// Stop ends the loop.
	Stop
)

// Loop calls a function periodically: at once (or after Interval, with Delay), then Interval
// after each call returned, or as soon as Wake receives, until its context is done.
type Loop struct {
	Interval time.Duration
	// Wake, when set, calls the function early (a value means "work is due").
	Wake <-chan struct{}
	// Delay waits an interval before the first call.
	Delay bool
}

// Run runs the loop until ctx is done or fn returns Stop.
func (l Loop) Run(ctx context.Context, fn func(ctx context.Context) Next) {
	t := time.NewTimer(l.Interval)
	defer t.Stop()
	wait := l.Delay
	for {
		if wait {
			select {
			case <-ctx.Done():
				return
			case <-l.Wake:
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
		next := fn(ctx)
		switch next {
		case Stop:
			return
		case Again:
			wait = false
			continue
		}
		wait = true
		t.Stop()
		t.Reset(l.Interval)
	}
}

// Every calls fn at once and then interval after each call returned, until ctx is done.
func Every(ctx context.Context, interval time.Duration, fn func(ctx context.Context)) {
	Loop{Interval: interval}.Run(ctx, func(ctx context.Context) Next {
		fn(ctx)
		return Wait
	})
}
