// Package load is the traffic generator of the end-to-end benchmarks and the soak: a pool of
// workers that call one operation as fast as they can (or paced), each call timed, and the
// figures of a run (requests per second, latency quantiles, errors). Helpers send Stripe-signed
// webhooks and bearer-token GETs the way Stripe and the web app do.
package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Op is one request of a run, made by worker (0 to Workers-1; one worker's calls never overlap);
// i counts the calls of the run from 0. An error counts as a failed request; its latency is
// recorded all the same.
type Op func(ctx context.Context, worker, i int) error

// Config bounds a run: it stops after Requests calls or after Duration, whichever comes first;
// at least one of them must be set.
type Config struct {
	Workers  int           // concurrent callers; default 1
	Requests int           // total calls; 0 means no limit
	Duration time.Duration // wall-clock limit; 0 means no limit
}

// Result is what a run measured.
type Result struct {
	Requests  int             // calls made
	Errors    int             // calls that returned an error
	FirstErr  error           // the first of them, nil when none
	Elapsed   time.Duration   // from the first call's start to the last call's end
	Latencies []time.Duration // every call's latency, sorted ascending
}

// Run calls op from cfg.Workers goroutines until the run's bound, then returns the figures.
// Cancelling ctx ends the run early (calls in flight finish).
func Run(ctx context.Context, cfg Config, op Op) (Result, error) {
	if cfg.Requests <= 0 && cfg.Duration <= 0 {
		return Result{}, errors.New("load: Config needs Requests or Duration")
	}
	workers := max(cfg.Workers, 1)
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = time.Now().Add(cfg.Duration)
	}
	var (
		next     atomic.Int64
		errCount atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
		perW     = make([][]time.Duration, workers)
	)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1024)
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if cfg.Requests > 0 && i >= cfg.Requests {
					break
				}
				t0 := time.Now()
				if !deadline.IsZero() && t0.After(deadline) {
					break
				}
				err := op(ctx, w, i)
				lat = append(lat, time.Since(t0))
				if err != nil {
					errCount.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
			perW[w] = lat
		})
	}
	wg.Wait()
	r := Result{Elapsed: time.Since(start), Errors: int(errCount.Load()), FirstErr: firstErr}
	for _, l := range perW {
		r.Latencies = append(r.Latencies, l...)
	}
	slices.Sort(r.Latencies)
	r.Requests = len(r.Latencies)
	return r, nil
}

// Rate is the successful calls per second of the run.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests-r.Errors) / r.Elapsed.Seconds()
}

// Quantile is the latency below or at which a fraction q (0 < q <= 1) of the calls finished.
func (r Result) Quantile(q float64) time.Duration { return Quantile(r.Latencies, q) }

// String sums the run up in one line: rate, p50, p99 and errors.
func (r Result) String() string {
	s := fmt.Sprintf("%d req in %s: %.0f req/s, p50 %s, p99 %s", r.Requests, r.Elapsed.Round(time.Millisecond),
		r.Rate(), FormatMs(r.Quantile(0.50)), FormatMs(r.Quantile(0.99)))
	if r.Errors > 0 {
		s += fmt.Sprintf(", %d errors (first: %v)", r.Errors, r.FirstErr)
	}
	return s
}

// Quantile returns the nearest-rank q-quantile of sorted (ascending): the smallest sample such
// that at least a fraction q of the samples are at or below it. It is 0 for no samples; q is
// clamped to (0, 1].
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// FormatMs prints a latency in milliseconds with a precision that suits its size.
func FormatMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 1:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.0f ms", ms)
	}
}
