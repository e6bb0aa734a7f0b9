package projection

import (
	"fmt"
	"os"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/subscription"
)

// LoadRules are the derivation rules of the configuration: the user id's metadata key, whether
// past_due grants, and the features and limits of PLANS_FILE (read and validated) when it is set.
func LoadRules(cfg config.Processor) (subscription.Rules, error) {
	rules := subscription.DefaultRules()
	rules.UserIDMetadataKey = cfg.UserIDMetadataKey
	rules.PastDueGrants = cfg.PastDueGrants
	if cfg.PlansFile == "" {
		return rules, nil
	}
	f, err := os.Open(cfg.PlansFile)
	if err != nil {
		return rules, fmt.Errorf("configuration: PLANS_FILE=%q: %w", cfg.PlansFile, err)
	}
	defer func() { _ = f.Close() }() // read only: nothing to lose
	plans, err := subscription.ParsePlans(f)
	if err != nil {
		return rules, fmt.Errorf("configuration: PLANS_FILE=%q: %w", cfg.PlansFile, err)
	}
	rules.Plans, rules.Limits = plans.Features, plans.Limits
	return rules, nil
}
