package operate

import (
	"strconv"

	"github.com/tollgate/tollgate/pkg/scope"
)

// InvalidParameterError is a request parameter that cannot be read; Param names it.
type InvalidParameterError struct {
	Param string
}

func (e *InvalidParameterError) Error() string { return e.Param + " is invalid" }

// ParseScope reads the scope an operator asks about: livemode ("" for true) and account (""
// for the platform). A bad value is an *InvalidParameterError naming "livemode" or "account".
func ParseScope(livemode, account string) (scope.Scope, error) {
	sc := scope.Live()
	if livemode != "" {
		b, err := strconv.ParseBool(livemode)
		if err != nil {
			return sc, &InvalidParameterError{Param: "livemode"}
		}
		sc.Livemode = b
	}
	if account != "" {
		if !scope.ValidAccount(account) {
			return sc, &InvalidParameterError{Param: "account"}
		}
		sc.Account = account
	}
	return sc, nil
}
