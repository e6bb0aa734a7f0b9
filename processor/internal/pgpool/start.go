package pgpool

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// StartSchema applies pending migrations, then records PLANS_FILE's feature names in the flag
// catalogue, which the query API's OpenFeature endpoint (/ofrep) reads to tell a flag that is
// off from a name that is no flag. The catalogue holds the names of the last processor started.
func StartSchema(ctx context.Context, databaseURL string, pool catalogue.Execer, rules subscription.Rules, logger *slog.Logger) error {
	if err := Migrate(ctx, databaseURL, logger); err != nil {
		return err
	}
	names := append(catalogue.FromPlans(rules.Plans), catalogue.FromPlanLimits(rules.Limits)...)
	if err := catalogue.Write(ctx, pool, catalogue.SourcePlans, names); err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	logger.Info("flag catalogue recorded", "names", len(names))
	return nil
}
