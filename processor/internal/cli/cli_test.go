package cli_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/processor/internal/backfill"
	"github.com/tollgate/tollgate/processor/internal/cli"
)

func TestSinceFlag(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"72h": 72 * time.Hour, "7d": 7 * 24 * time.Hour, "90m": 90 * time.Minute, "30d": backfill.MaxSince} {
		var f cli.SinceFlag
		require.NoError(t, f.Set(in))
		require.Equal(t, want, time.Duration(f))
	}
	var f cli.SinceFlag
	require.Error(t, f.Set("d"))
	require.Equal(t, "72h", backfill.ShortDuration(72*time.Hour))
	require.Equal(t, "1h30m", backfill.ShortDuration(90*time.Minute))
	require.Equal(t, "45s", backfill.ShortDuration(45*time.Second))
}
