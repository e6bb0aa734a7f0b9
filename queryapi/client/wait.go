package client

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// ErrWaitTimeout is returned by WaitForCheckout, together with the answer as it stood, when the
// API's wait ended before the read model included the Checkout Session (header
// Tollgate-Wait: timeout).
var ErrWaitTimeout = errors.New("queryapi: checkout session not applied yet")

// MaxWait is the longest wait the API holds an answer for (?timeout= at most 10 s).
const MaxWait = 10 * time.Second

// WaitForCheckout is the Checkout success page's question: the user's answer once the read
// model includes the completion of the Checkout Session sessionID (cs_…), waiting on the server
// for up to MaxWait or until ctx's deadline if sooner. After the wait it returns the answer as it
// stands and ErrWaitTimeout (ErrNotFound when the user is still unknown). It bypasses the
// client's cache and fail-open: a success page wants the fresh answer or to say "processing".
func (c *Client) WaitForCheckout(ctx context.Context, userID, sessionID string) (Entitlement, error) {
	if userID == "" || sessionID == "" {
		return Entitlement{}, errors.New("queryapi: empty user or session id")
	}
	wait := MaxWait
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)-c.timeout)
	}
	wait = max(wait, time.Second)
	q := url.Values{"wait_for": {sessionID}, "timeout": {wait.String()}}
	e, h, err := c.get(ctx, c.userURL(userID, q), wait+c.timeout)
	if err == nil && h.Get("Tollgate-Wait") == "timeout" {
		return e, ErrWaitTimeout
	}
	return e, err
}
