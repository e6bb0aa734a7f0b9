// Package cli is the command-line plumbing the operator commands share: the usage error and
// the exit status, flag types, and the dependencies a command runs on.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/subscription"
	"github.com/tollgate/tollgate/processor/internal/notify"
	"github.com/tollgate/tollgate/processor/internal/pgpool"
	"github.com/tollgate/tollgate/processor/internal/projection"
	"github.com/tollgate/tollgate/processor/internal/reconcile"
)

// ErrUsage is wrapped by errors in how the processor was invoked (exit status 2).
var ErrUsage = errors.New("usage")

// ExitCode is the exit status for run's error: 0 for nil, 2 for a usage error or drift found by
// reconcile, 1 for any other failure.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage), errors.Is(err, reconcile.ErrDrift):
		return 2
	default:
		return 1
	}
}

// ListFlag collects a repeated flag's values.
type ListFlag []string

func (l *ListFlag) String() string     { return strings.Join(*l, ",") }
func (l *ListFlag) Set(v string) error { *l = append(*l, v); return nil }

// LimitsFlag collects repeated name=N values.
type LimitsFlag map[string]int64

func (l LimitsFlag) String() string { b, _ := json.Marshal(map[string]int64(l)); return string(b) }

// Set adds one name=N value.
func (l LimitsFlag) Set(v string) error {
	name, n, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want name=N, got %q", v)
	}
	i, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return fmt.Errorf("limit %q: want an integer, got %q", name, n)
	}
	l[name] = i
	return nil
}

// LoadConfig reads the processor's variables and builds the derivation rules from them,
// reading and validating PLANS_FILE.
func LoadConfig(getenv func(string) string) (config.Processor, subscription.Rules, error) {
	cfg, err := config.LoadProcessor(getenv)
	if err != nil {
		return cfg, subscription.Rules{}, err
	}
	rules, err := projection.LoadRules(cfg)
	return cfg, rules, err
}

// Deps are what replay, dlq redrive, recover and grant run on.
type Deps struct {
	Pool *pgxpool.Pool
	Proj *projection.Projector
}

// Open builds a command's Deps from the environment; the caller closes Pool.
func Open(ctx context.Context, getenv func(string) string, stderr io.Writer) (Deps, error) {
	cfg, rules, err := LoadConfig(getenv)
	if err != nil {
		return Deps{}, err
	}
	pool, err := pgpool.OpenCommand(ctx, cfg.DatabaseURL)
	if err != nil {
		return Deps{}, err
	}
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	reg := prometheus.NewRegistry()
	// Replay and redrive record the notifications of what they change, for serve to deliver.
	notify := notify.New(pool, cfg.NotifyURLs, cfg.NotifySecret, nil, notify.DefaultOptions(), logger, reg)
	return Deps{
		Pool: pool,
		Proj: &projection.Projector{DB: pool, Rules: rules, Log: logger, Metrics: projection.NewMetrics(reg), Notify: notify},
	}, nil
}
