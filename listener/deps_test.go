package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The listener is the one internet-facing process: it must hold no database driver and no
// Stripe API client. stripe-go's webhook package (signature checks) is allowed; it imports the
// root package only for its types, and the linker keeps none of the API client's code.
func TestNoDatabaseNoStripeClient(t *testing.T) {
	t.Parallel()
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/stripe/stripe-go/v76/webhook", "the test must see the real dependency list")
	for _, d := range deps {
		require.NotContains(t, d, "jackc/pgx", "the listener never connects to Postgres")
		require.False(t, strings.HasPrefix(d, "github.com/stripe/stripe-go/v76/") && d != "github.com/stripe/stripe-go/v76/webhook" && d != "github.com/stripe/stripe-go/v76/form",
			"the listener holds no Stripe API client: %s", d)
	}
}
