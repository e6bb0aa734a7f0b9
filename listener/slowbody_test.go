package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/stripetest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// trickler is a client that sends a webhook's headers and then a byte every few seconds.
type trickler struct {
	conn     net.Conn
	outcome  chan string // the status line read, or "closed"
	stopOnce sync.Once
	stop     chan struct{}
}

// trickle opens a connection to addr that claims a 1,000-byte body and sends it a byte every
// period; its outcome is what the listener answered, or "closed".
func trickle(t *testing.T, addr string, period time.Duration) *trickler {
	t.Helper()
	c, err := (&net.Dialer{}).DialContext(t.Context(), "tcp", addr)
	require.NoError(t, err)
	tr := &trickler{conn: c, outcome: make(chan string, 1), stop: make(chan struct{})}
	t.Cleanup(func() {
		tr.stopOnce.Do(func() { close(tr.stop) })
		_ = c.Close()
	})
	_, err = fmt.Fprintf(c, "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nStripe-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n{")
	require.NoError(t, err)
	go func() { // writes until the listener stops reading
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	go func() { // reads the answer, if any
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			tr.outcome <- "closed"
		} else {
			tr.outcome <- line
		}
		tr.stopOnce.Do(func() { close(tr.stop) })
	}()
	return tr
}

// 300 clients trickling a byte every 2 s once held the 128 body slots, and a valid webhook got 503
// overloaded for as long as they lasted. Now a body is charged for the bytes it buffered, not for
// its connection, and one that does not arrive at the minimum pace is cut off with 408: a valid
// webhook sent while all 300 are open is stored at once, and every trickler is cut off soon after
// bodyGrace, its reservation released. Through run(): the real http.Server on a real port.
func TestSlowBodiesDoNotCrowdOutStripe(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	l := start(t, ns.URL())
	base := "http://" + l.addr
	wait.For(t, 10*time.Second, "ready", func() bool {
		code, _ := httpGet(t, base+"/readyz")
		return code == http.StatusOK
	})
	heapBefore := heapInUse()

	const n = 300
	opened := time.Now()
	tricklers := make([]*trickler, n)
	for i := range tricklers {
		tricklers[i] = trickle(t, l.addr, 2*time.Second)
	}
	_, _, raw := newEvent(t)
	sent := time.Now()
	resp := stripetest.Deliver(t, base+"/webhooks/stripe", raw, testSecret)
	toAnswer := time.Since(sent)
	require.Equal(t, http.StatusOK, resp.Status, "a valid webhook while %d clients trickle: %s", n, resp.Body)
	heapDuring := heapInUse()

	held := 0
	for _, tr := range tricklers {
		select {
		case out := <-tr.outcome:
			tr.outcome <- out // put back for the count below
		default:
			held++
		}
	}
	require.Equal(t, n, held, "every trickler was still connected when the webhook was answered")

	cut := map[string]int{}
	var lastCut time.Duration
	for _, tr := range tricklers {
		select {
		case out := <-tr.outcome:
			cut[out]++
			lastCut = max(lastCut, time.Since(opened))
		case <-time.After(bodyGrace + 20*time.Second):
			t.Fatalf("a trickler was still connected %s after it opened", time.Since(opened))
		}
	}
	require.Equal(t, map[string]int{"HTTP/1.1 408 Request Timeout\r\n": n}, cut)
	t.Logf("%d trickling connections held open; valid webhook answered 200 in %s; heap in use grew %d KiB with them open; all cut off with 408 within %s of opening",
		held, toAnswer.Round(time.Millisecond), (int64(heapDuring)-int64(heapBefore))>>10, lastCut.Round(time.Millisecond))
	wait.For(t, 5*time.Second, "no body bytes reserved once the tricklers are gone", func() bool { return metricValue(t, base, "tollgate_listener_body_bytes_reserved") == 0 })
}

// metricValue reads one unlabelled series from the listener's /metrics at base (-1 when absent).
func metricValue(t *testing.T, base, name string) float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return -1
}
