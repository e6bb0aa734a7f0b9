package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/queryapi/client"
)

// The web app asks before showing a premium page. With WithFailOpen an outage of the query API
// grants access instead of locking paying users out; a refused token is still an error.
func ExampleClient_IsPremium() {
	c := client.New("http://127.0.0.1:8081", "token-from-QUERYAPI_TOKENS",
		client.WithTimeout(500*time.Millisecond),
		client.WithCache(5*time.Second, 10_000),
		client.WithFailOpen())
	premium, err := c.IsPremium(context.Background(), "u_42")
	if err != nil {
		fmt.Println("cannot tell:", err)
		return
	}
	fmt.Println("premium:", premium)
}
