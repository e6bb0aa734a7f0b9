package natstest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// StartWithCreds runs a server with decentralised auth (an operator, one account with
// JetStream, no anonymous access) and returns it with the path of a .creds file (user JWT and
// nkey seed) of a user of that account, as NATS_CREDS names one.
func StartWithCreds(tb testing.TB) (*Server, string) {
	tb.Helper()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatalf("natstest: creds: %v", err)
		}
	}
	operator, err := nkeys.CreateOperator()
	must(err)
	operatorPub, err := operator.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(operatorPub)
	_, err = oc.Encode(operator)
	must(err)

	account, err := nkeys.CreateAccount()
	must(err)
	accountPub, err := account.PublicKey()
	must(err)
	ac := jwt.NewAccountClaims(accountPub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accountJWT, err := ac.Encode(operator)
	must(err)

	user, err := nkeys.CreateUser()
	must(err)
	userPub, err := user.PublicKey()
	must(err)
	userJWT, err := jwt.NewUserClaims(userPub).Encode(account)
	must(err)
	seed, err := user.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	path := filepath.Join(tb.TempDir(), "user.creds")
	must(os.WriteFile(path, creds, 0o600))

	// The server needs a system account in operator mode.
	system, err := nkeys.CreateAccount()
	must(err)
	systemPub, err := system.PublicKey()
	must(err)
	systemJWT, err := jwt.NewAccountClaims(systemPub).Encode(operator)
	must(err)

	resolver := &server.MemAccResolver{}
	must(resolver.Store(accountPub, accountJWT))
	must(resolver.Store(systemPub, systemJWT))
	s := StartWithOptions(tb, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.AccountResolver = resolver
		o.SystemAccount = systemPub
	})
	return s, path
}
