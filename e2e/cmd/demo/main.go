// Command demo is `make demo`: while `make run` is up it sends a realistic, Stripe-signed
// subscription lifecycle to the listener (customer with a user id, checkout, subscription
// created then active, then past_due, then canceled) and prints the user's entitlement after
// each step, as the query API answers it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tollgate/tollgate/e2e/scenario"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	dataDir := getenv("DATA_DIR")
	if dataDir == "" {
		dataDir = ".data"
	}
	env, err := readEnv(filepath.Join(dataDir, "stack.env"))
	if err != nil {
		return fmt.Errorf("%w (is `make run` up in another terminal?)", err)
	}
	c := scenario.NewCustomer("demo"+strconv.FormatInt(time.Now().Unix(), 36)+"_", 1)
	fmt.Fprintf(stdout, "Demo user %s, Stripe customer %s\n\n", c.UserID, c.ID)
	client := &http.Client{Timeout: 10 * time.Second}
	for i, step := range c.Lifecycle(time.Now().Add(-time.Minute)) {
		answer, err := deliver(ctx, client, env["LISTENER_URL"]+"/webhooks/stripe", step.Event.Payload, env["STRIPE_WEBHOOK_SECRET"])
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, step.Name, err)
		}
		ent, err := awaitEntitlement(ctx, client, env["QUERYAPI_URL"], env["QUERYAPI_TOKEN"], c.UserID, step.Event.ID)
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, step.Name, err)
		}
		fmt.Fprintf(stdout, "%d. %-36s %-22s -> listener %s\n   premium=%-5v status=%-10s features=%v\n",
			i+1, step.Name, step.Event.Type, answer, ent.Premium, ent.Status, ent.Features)
		if ent.Premium != step.WantPremium || ent.Status != step.WantStatus {
			return fmt.Errorf("step %d (%s): got premium=%v status=%s, want premium=%v status=%s",
				i+1, step.Name, ent.Premium, ent.Status, step.WantPremium, step.WantStatus)
		}
	}
	fmt.Fprintf(stdout, "\nAsk yourself:\n  curl -s -H 'Authorization: Bearer %s' %s/v1/users/%s/entitlement\n",
		env["QUERYAPI_TOKEN"], env["QUERYAPI_URL"], c.UserID)
	return nil
}

func deliver(ctx context.Context, client *http.Client, url string, payload []byte, secret string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", scenario.Sign(payload, secret))
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("post webhook: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("listener answered %d: %s", resp.StatusCode, body)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body)), nil
}

type entitlement struct {
	Premium     bool     `json:"premium"`
	Status      string   `json:"status"`
	Features    []string `json:"features"`
	LastEventID string   `json:"last_event_id"`
}

// awaitEntitlement polls the query API until the answer reflects event id (the processor is
// asynchronous), for at most 15 s.
func awaitEntitlement(ctx context.Context, client *http.Client, base, token, user, eventID string) (entitlement, error) {
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/users/"+user+"/entitlement", nil)
		if err != nil {
			return entitlement{}, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return entitlement{}, fmt.Errorf("query API: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		if resp.StatusCode == http.StatusOK {
			var e entitlement
			if err := json.Unmarshal(body, &e); err != nil {
				return entitlement{}, fmt.Errorf("query API answer: %w", err)
			}
			if e.LastEventID == eventID {
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return entitlement{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return entitlement{}, fmt.Errorf("the query API did not show event %s within 15s; last answer: %s", eventID, last)
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			env[k] = v
		}
	}
	for _, k := range []string{"LISTENER_URL", "QUERYAPI_URL", "STRIPE_WEBHOOK_SECRET", "QUERYAPI_TOKEN"} {
		if env[k] == "" {
			return nil, errors.Join(sc.Err(), fmt.Errorf("%s has no %s", path, k))
		}
	}
	return env, sc.Err()
}
