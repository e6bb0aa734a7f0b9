package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/e2e/load"
	"github.com/tollgate/tollgate/e2e/rig"
	"github.com/tollgate/tollgate/e2e/scenario"
	"github.com/tollgate/tollgate/e2e/stack"
)

// peerDir holds the peer: stripe-sync-engine served by Node (e2e/peer-sse, npm ci first).
const peerDir = "e2e/peer-sse"

// peerRounds is how many times the listener and the peer each take the load, alternately.
const peerRounds = 3

// peer measures the listener beside stripe-sync-engine under one webhook load: the same kind of
// signed events (peerEvents, each run its own ids), c32, the listener (NATS default sync, the processor
// stopped so that it has the machine as the peer has) and the peer (Node, writing each object to
// Postgres) taking turns, peerRounds times each. The ratio is of the medians.
func (b *bench) peer(ctx context.Context, r *rig.Rig) {
	st := r.Stack
	p, err := startPeer(ctx, r.DatabaseURL, st.WebhookSecret, b.log)
	if err != nil {
		b.fail(err)
		return
	}
	defer p.stop()
	b.say("stripe-sync-engine %s serving at %s", p.version, p.url)
	if err := st.Process(stack.Processor).Stop(20 * time.Second); err != nil {
		b.fail(fmt.Errorf("stop processor: %w", err))
		return
	}
	n := b.n(webhookRequests)
	var ours, theirs []load.Result
	for round := range peerRounds {
		for _, side := range []struct {
			name, url string
			into      *[]load.Result
		}{{"listener", st.URL(stack.Listener), &ours}, {"stripe-sync-engine", p.url, &theirs}} {
			res, err := b.sendEvents(ctx, side.url, st.WebhookSecret, peerEvents(fmt.Sprintf("p%d%c%s_", round, side.name[0], b.runID), warmup+n))
			if err != nil {
				b.fail(fmt.Errorf("%s, round %d: %w", side.name, round+1, err))
				return
			}
			b.say("side by side, round %d, %s: %s", round+1, side.name, res)
			*side.into = append(*side.into, res)
		}
	}
	rates := func(rs []load.Result) (string, float64) {
		var s []string
		var v []float64
		for _, r := range rs {
			s = append(s, thousands(r.Rate()))
			v = append(v, r.Rate())
		}
		return strings.Join(s, " · "), median(v)
	}
	oursS, oursM := rates(ours)
	theirsS, theirsM := rates(theirs)
	ratio := oursM / theirsM
	b.rows = append(b.rows,
		row{fmt.Sprintf("webhook acceptance beside stripe-sync-engine %s (Node %s, Postgres): listener, NATS default sync, and the peer taking turns, the same load (c%d)",
			p.version, p.node, webhookConc),
			fmt.Sprintf("listener **%s req/s**, stripe-sync-engine **%s req/s** (rounds in order); medians %.1f×", oursS, theirsS, ratio),
			"≥ 5×", yesNo(ratio >= 5)})
}

// peerEvents are n lifecycle events without the checkout sessions: stripe-sync-engine fetches a
// session's line items from Stripe's API, which a benchmark cannot reach (and which would measure
// Stripe, not the peer). Customers and subscriptions it writes from the payload alone.
func peerEvents(prefix string, n int) []scenario.Event {
	var out []scenario.Event
	for _, e := range lifecycleEvents(prefix, n/4+1, 5) {
		if !strings.HasPrefix(e.Type, "checkout.") {
			out = append(out, e)
		}
	}
	return out[:min(n, len(out))]
}

// median of v (not empty).
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// peerProc is the running peer.
type peerProc struct {
	cmd           *exec.Cmd
	url           string
	version, node string
}

// startPeer starts e2e/peer-sse/server.js on a free port against databaseURL (its own schema,
// "stripe", which it migrates) and waits until it listens.
func startPeer(ctx context.Context, databaseURL, secret string, log io.Writer) (*peerProc, error) {
	pkg := filepath.Join(peerDir, "node_modules", "@supabase", "stripe-sync-engine", "package.json")
	raw, err := os.ReadFile(pkg)
	if err != nil {
		return nil, fmt.Errorf("the peer is not installed (%w): run npm ci in %s", err, peerDir)
	}
	var meta struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("read %s: %w", pkg, err)
	}
	node, err := exec.CommandContext(ctx, "node", "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("the peer needs node: %w", err)
	}
	addr, err := rig.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	cmd := exec.CommandContext(ctx, "node", "server.js")
	cmd.Dir = peerDir
	cmd.Env = append(os.Environ(), "PORT="+port, "DATABASE_URL="+databaseURL, "STRIPE_WEBHOOK_SECRET="+secret)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the peer: %w", err)
	}
	p := &peerProc{cmd: cmd, url: "http://127.0.0.1:" + port, version: meta.Version, node: strings.TrimSpace(string(node))}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		select {
		case err := <-exited:
			return nil, fmt.Errorf("the peer exited at start: %w (its log is in the bench log)", err)
		case <-time.After(100 * time.Millisecond):
		}
		if c, err := (&net.Dialer{}).DialContext(ctx, "tcp", hostPort(p.url)); err == nil {
			_ = c.Close()
			return p, nil
		}
	}
	_ = cmd.Process.Kill()
	return nil, errors.New("the peer did not listen within a minute")
}

// stop kills the peer: it keeps nothing worth a clean shutdown.
func (p *peerProc) stop() { _ = p.cmd.Process.Kill() }
