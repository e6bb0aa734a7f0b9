package ofprovider_test

import (
	"context"
	"fmt"
	"time"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/tollgate/tollgate/queryapi/client/ofprovider"
)

// The web app registers the provider once, then asks flags about the signed-in user. On any
// failure the SDK answers the code's default (false, 0 here) with the error.
func Example() {
	ctx := context.Background()
	provider := ofprovider.New("http://127.0.0.1:8081", "token-from-QUERYAPI_TOKENS",
		ofprovider.WithTimeout(500*time.Millisecond))
	if err := openfeature.SetProviderAndWait(provider); err != nil {
		fmt.Println("provider:", err)
		return
	}
	flags := openfeature.NewDefaultClient()
	user := openfeature.NewEvaluationContext("u_42", map[string]any{"livemode": true})

	premium, _ := flags.BooleanValue(ctx, "premium", false, user)
	export, _ := flags.BooleanValue(ctx, "export", false, user)
	seats, _ := flags.IntValue(ctx, "seats", 0, user)
	fmt.Println(premium, export, seats)
}
