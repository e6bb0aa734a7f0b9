package stream

// EntitlementsPrefix starts the subjects entitlement changes are published on (core NATS, best
// effort). It lies outside AllSubjects, so the STRIPE_EVENTS stream never captures them.
const EntitlementsPrefix = "tollgate.entitlements"

// EntitlementSubject is the subject a user's entitlement changes are published on:
// tollgate.entitlements.<scope>.<user>, where scope is live, test, live_acct_x or test_acct_x and
// both are reduced to valid subject tokens as Subject reduces a customer id.
func EntitlementSubject(scope, userID string) string {
	return EntitlementsPrefix + "." + token(scope, "_") + "." + token(userID, NoCustomer)
}
