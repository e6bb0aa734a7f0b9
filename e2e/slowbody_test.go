package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/e2e/rig"
	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// The real listener binary, with 300 clients each trickling a webhook body a byte every 2 s (they
// once held the 128 body slots and Stripe's deliveries got 503 overloaded): a valid webhook sent
// while all 300 are open is answered 200, and each trickler is cut off with 408 soon after the
// body grace. The figures (connections held, time to 200, the process's resident memory) are
// logged.
func TestSlowBodiesThroughTheListenerBinary(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "listener")
	build := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", bin, "./listener")
	build.Dir, build.Env = repoRoot(t), append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build the listener:\n%s", out)

	ns := natstest.Start(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const secret = "whsec_slowbody_e2e"
	cmd := exec.CommandContext(context.WithoutCancel(t.Context()), bin) // stopped by SIGINT in Cleanup
	cmd.Env = []string{"HTTP_ADDR=" + addr, "NATS_URL=" + ns.URL(), "STRIPE_WEBHOOK_SECRETS=" + secret}
	logs := &strings.Builder{}
	var logMu sync.Mutex
	cmd.Stderr = writerFunc(func(p []byte) (int, error) { logMu.Lock(); defer logMu.Unlock(); return logs.Write(p) })
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		if t.Failed() {
			logMu.Lock()
			t.Logf("listener log:\n%s", logs.String())
			logMu.Unlock()
		}
	})
	base := "http://" + addr
	wait.For(t, 20*time.Second, "the listener is ready", func() bool {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	rssIdle, err := rig.RSS(cmd.Process.Pid)
	require.NoError(t, err)

	const n = 300
	outcomes := make(chan string, n)
	opened := time.Now()
	for range n {
		c, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = fmt.Fprintf(c, "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n{")
		require.NoError(t, err)
		stop := make(chan struct{})
		go func() {
			tick := time.NewTicker(2 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		go func() {
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				line = "closed"
			}
			outcomes <- strings.TrimSpace(line)
			close(stop)
		}()
	}
	raw := stripetest.Event{ID: "evt_slowbody_e2e", Type: "customer.subscription.created",
		Object: stripetest.Subscription("sub_slowbody", "cus_slowbody", "active", "price_pro")}.JSON(t)
	sent := time.Now()
	resp := stripetest.Deliver(t, base+"/webhooks/stripe", raw, secret)
	toAnswer := time.Since(sent)
	require.Equal(t, http.StatusOK, resp.Status, string(resp.Body))
	rssHeld, err := rig.RSS(cmd.Process.Pid)
	require.NoError(t, err)
	require.Empty(t, outcomes, "every trickler was still connected when the webhook was answered")

	counts := map[string]int{}
	var lastCut time.Duration
	for range n {
		select {
		case o := <-outcomes:
			counts[o]++
			lastCut = time.Since(opened)
		case <-time.After(30 * time.Second):
			t.Fatalf("tricklers still connected %s after they opened: %v", time.Since(opened), counts)
		}
	}
	require.Equal(t, map[string]int{"HTTP/1.1 408 Request Timeout": n}, counts)
	t.Logf("listener binary: %d trickling connections held; a valid webhook answered 200 in %s; RSS %d KiB idle, %d KiB with them open; every trickler cut off with 408 within %s of opening",
		n, toAnswer.Round(time.Millisecond), rssIdle>>10, rssHeld>>10, lastCut.Round(time.Millisecond))
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
