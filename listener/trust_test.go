package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

const (
	liveSecret     = "whsec_live_endpoint"
	testModeSecret = "whsec_test_endpoint"
)

// A secret bound to a mode signs only that mode: a test endpoint's secret, however it leaked,
// cannot sign a live event. Bare secrets sign either mode, as before binding existed.
func TestWebhookBoundSecrets(t *testing.T) {
	t.Parallel()
	bound := []config.WebhookSecret{{Secret: liveSecret, Mode: config.ModeLive}, {Secret: testModeSecret, Mode: config.ModeTest}}
	tests := []struct {
		name     string
		secrets  []config.WebhookSecret
		livemode bool
		sign     []string
		code     string // "" for 200
	}{
		{"live event, live secret", bound, true, []string{liveSecret}, ""},
		{"test event, test secret", bound, false, []string{testModeSecret}, ""},
		{"live event signed by the test secret", bound, true, []string{testModeSecret}, "livemode_mismatch"},
		{"test event signed by the live secret", bound, false, []string{liveSecret}, "livemode_mismatch"},
		{"live event signed by both (one matches its mode)", bound, true, []string{testModeSecret, liveSecret}, ""},
		{"live event, unbound secret", unbound(testModeSecret), true, []string{testModeSecret}, ""},
		{"live event, bound test and unbound other", append(unbound("whsec_any"), bound[1]), true, []string{testModeSecret}, "livemode_mismatch"},
		{"an unknown secret is still invalid_signature", bound, true, []string{"whsec_nobody"}, "invalid_signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupWith(t, setupOptions{config: func(c *config.Listener) { c.WebhookSecrets = tt.secrets }})
			n := eventSeq.Add(1)
			raw := stripetest.Event{ID: fmt.Sprintf("evt_mode_%d", n), Type: "customer.subscription.created", Livemode: tt.livemode,
				Object: stripetest.Subscription(fmt.Sprintf("sub_mode_%d", n), fmt.Sprintf("cus_mode_%d", n), "active", "price_pro")}.JSON(t)
			resp := stripetest.Post(t, b.url, raw, stripetest.Sign(raw, tt.sign...))
			if tt.code == "" {
				require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
				require.Equal(t, uint64(1), b.msgCount(t))
				return
			}
			requireError(t, resp, http.StatusBadRequest, tt.code)
			require.Zero(t, b.msgCount(t))
		})
	}
}

// Tollgate's snapshot events come only from the processor's repair path: one arriving as a
// webhook, however well signed, is refused with the field named, and nothing is published.
func TestWebhookRefusesTollgatesOwnEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sub := stripetest.Subscription("sub_forged", "cus_forged", "active", "price_pro")
	for _, tt := range []struct {
		name, id, typ, field string
	}{
		{"a snapshot type", "evt_forged_1", "tollgate.snapshot.subscription", "type"},
		{"any tollgate. type", "evt_forged_2", "tollgate.entitlements.updated", "type"},
		{"a snapshot id", "tgsnap_forged", "customer.subscription.updated", "id"},
	} {
		raw := stripetest.Event{ID: tt.id, Type: tt.typ, Object: sub}.JSON(t)
		resp := stripetest.Deliver(t, b.url, raw, testSecret)
		requireError(t, resp, http.StatusBadRequest, "invalid_payload")
		require.Contains(t, string(resp.Body), tt.field+` \"`, tt.name)
	}
	require.Zero(t, b.msgCount(t))
}

// stripe-go verifies the MAC with the last t= while the tolerance check read the first: a
// signature made for a far-future time passed with a present t= in front of it.
func TestWebhookRefusesTwoTimestamps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, raw := newEvent(t)
	future := time.Now().AddDate(1, 0, 0)
	forged := stripetest.SignAt(raw, future, testSecret) // t=future,v1=mac over future
	header := fmt.Sprintf("t=%d,%s", time.Now().Unix(), forged)
	require.Equal(t, 2, strings.Count(header, "t="))
	resp := stripetest.Post(t, b.url, raw, header)
	requireError(t, resp, http.StatusBadRequest, "invalid_signature")
	require.Contains(t, string(resp.Body), "2 t= timestamps")
	require.Zero(t, b.msgCount(t))
}

// NATS_CREDS: the listener connects with a .creds file to a server run with decentralised auth
// and stores a webhook; a user and password in NATS_URL work too, and the password never reaches
// the log.
func TestRunNATSCredentials(t *testing.T) {
	t.Parallel()
	t.Run("creds file", func(t *testing.T) {
		t.Parallel()
		ns, creds := natstest.StartWithCreds(t)
		l := startWith(t, ns.URL(), map[string]string{"NATS_CREDS": creds})
		deliverStored(t, l)
	})
	t.Run("user and password in the URL", func(t *testing.T) {
		t.Parallel()
		ns := natstest.StartWithOptions(t, func(o *natsserver.Options) {
			o.Users = []*natsserver.User{{Username: "listener", Password: "s3cret-pw"}}
		})
		u := strings.Replace(ns.URL(), "nats://", "nats://listener:s3cret-pw@", 1)
		l := startWith(t, u, nil)
		deliverStored(t, l)
		require.NotContains(t, l.stderr.String(), "s3cret-pw")
	})
}

// deliverStored waits until l is ready and delivers a webhook that must be stored.
func deliverStored(t *testing.T, l *started) {
	t.Helper()
	base := "http://" + l.addr
	wait.For(t, 10*time.Second, "ready", func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == http.StatusOK
	})
	_, _, raw := newEvent(t)
	resp := stripetest.Deliver(t, base+"/webhooks/stripe", raw, testSecret)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
}
