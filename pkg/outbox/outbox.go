// Package outbox holds the notifications to the app (NOTIFY_URLS): Record writes them in the
// transaction that changes the read model, so that a crash can neither lose one nor send one for
// a change that did not commit; Claim, Delivered and Retry are the delivery's statements. It holds
// every statement on notification_state and notification_outbox.
package outbox

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/entitlement"
	"github.com/tollgate/tollgate/pkg/scope"
)

// Token is the scope as one NATS subject token: live, test, live_acct_x, test_acct_x.
func Token(s scope.Scope) string {
	t := s.Mode()
	if s.Account != "" {
		t += "_" + s.Account
	}
	return t
}

// Answer is the query API's answer for a user, as a notification carries it.
type Answer = entitlement.Answer

// Body is a notification's JSON body.
type Body struct {
	Type      string    `json:"type"` // always "entitlement.updated"
	Timestamp time.Time `json:"timestamp"`
	Sequence  int64     `json:"sequence"`
	Data      Answer    `json:"data"`
}

// Change is one notification Record wrote: the user's new answer and its sequence.
type Change struct {
	ID    string // the webhook-id
	Scope scope.Scope
	Body  Body
	Raw   []byte // Body encoded, exactly as POSTed
}

// gone is the answer of a user who lost its last customer.
func gone(userID string, sc scope.Scope) Answer {
	a := Answer{UserID: &userID, CustomerIDs: []string{}, Livemode: sc.Livemode, Status: "none",
		Features: []string{}, Limits: map[string]int64{}, Grants: []entitlement.Grant{}, Subscriptions: []entitlement.Subscription{}}
	if sc.Account != "" {
		a.Account = &sc.Account
	}
	return a
}

// digest is what makes a change: the answer without its bookkeeping (last event, updated_at).
// An invoice.paid that changes nothing else is not a change of the user's answer.
func digest(a Answer) string {
	a.LastEventID, a.LastEventCreated, a.UpdatedAt = nil, nil, nil
	b, _ := json.Marshal(a)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Record compares the read model's rows of the given users (rows: what the refresh wrote, as
// entitlement.RefreshUsersWithGrants returns them; a user absent has no row) with the last answer notified for each, and for each that changed (a first
// appearance included; a user whose row is gone gets one last answer with premium false) writes
// the next sequence and one outbox row per URL. Call it inside the read-model transaction, under
// the users' locks. It returns what it recorded, to publish once the transaction committed. With
// no URLs it still advances the sequences (NATS subscribers see them).
func Record(ctx context.Context, q entitlement.Querier, users []scope.Key, rows map[scope.Key]entitlement.User, urls []string, now time.Time) ([]Change, error) {
	if len(users) == 0 {
		return nil, nil
	}
	// Two round trips for the whole batch of users, whatever its size: their last notified
	// state, then every write (a drain applies a thousand users per transaction).
	type state struct {
		seq    int64
		digest string
	}
	last := make(map[scope.Key]state, len(users))
	livemode, account, ids := scope.Columns(users)
	stateRows, err := q.Query(ctx, `SELECT livemode, account, user_id, sequence, digest FROM notification_state
		WHERE (livemode, account, user_id) IN (SELECT * FROM unnest($1::boolean[], $2::text[], $3::text[]))`, livemode, account, ids)
	if err != nil {
		return nil, fmt.Errorf("read notification state of %d users: %w", len(users), err)
	}
	var sk scope.Key
	var st state
	if _, err := pgx.ForEachRow(stateRows, []any{&sk.Livemode, &sk.Account, &sk.ID, &st.seq, &st.digest}, func() error {
		last[sk] = st
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read notification state of %d users: %w", len(users), err)
	}
	var out []Change
	b := &pgx.Batch{}
	for _, k := range users {
		sc, id := k.Scope, k.ID
		a := gone(id, sc)
		u, there := rows[k]
		if there {
			a = entitlement.UserAnswer(u)
		}
		d := digest(a)
		prev, notified := last[k]
		switch {
		case !notified && !there:
			continue // never notified and not there: nothing to say
		case notified && prev.digest == d:
			continue
		}
		seq := prev.seq + 1
		c := Change{ID: messageID(sc, id, seq), Scope: sc, Body: Body{Type: "entitlement.updated", Timestamp: now.UTC().Truncate(time.Millisecond), Sequence: seq, Data: a}}
		if c.Raw, err = json.Marshal(c.Body); err != nil {
			return nil, fmt.Errorf("encode notification of user %s: %w", id, err)
		}
		b.Queue(`INSERT INTO notification_state (livemode, account, user_id, sequence, digest) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (livemode, account, user_id) DO UPDATE SET sequence = excluded.sequence, digest = excluded.digest`,
			sc.Livemode, sc.Account, id, seq, d)
		for _, url := range urls {
			b.Queue(`INSERT INTO notification_outbox (id, url, livemode, account, user_id, sequence, body) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				c.ID, url, sc.Livemode, sc.Account, id, seq, c.Raw)
		}
		out = append(out, c)
	}
	if b.Len() > 0 {
		if err := q.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("record notifications of %d users: %w", len(out), err)
		}
	}
	return out, nil
}

// messageID is the webhook-id of a user's sequence-th notification in a scope: the same for
// every URL and every retry.
func messageID(sc scope.Scope, userID string, seq int64) string {
	sum := sha256.Sum256([]byte(Token(sc) + "\x00" + userID + "\x00" + strconv.FormatInt(seq, 10)))
	return "msg_" + hex.EncodeToString(sum[:12])
}

// Sign is the Standard Webhooks signature header value of a message: "v1," and the base64 of
// HMAC-SHA256 with key over "id.timestamp.body".
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + strconv.FormatInt(timestamp, 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Delivery is one outbox row claimed for an attempt.
type Delivery struct {
	ID        string
	URL       string
	Body      []byte
	Attempts  int // before this one
	CreatedAt time.Time
}

// Claim leases up to limit due deliveries for lease: they are not claimed again until it
// passes, so several processors deliver each at most once at a time and one that died mid-way
// is retried after the lease.
func Claim(ctx context.Context, q entitlement.Querier, limit int, lease time.Duration) ([]Delivery, error) {
	rows, err := q.Query(ctx, `UPDATE notification_outbox o SET next_attempt_at = now() + $2 * interval '1 millisecond'
		FROM (SELECT id, url FROM notification_outbox
			WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
		WHERE o.id = due.id AND o.url = due.url
		RETURNING o.id, o.url, o.body, o.attempts, o.created_at`, limit, lease.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	var out []Delivery
	var d Delivery
	if _, err := pgx.ForEachRow(rows, []any{&d.ID, &d.URL, &d.Body, &d.Attempts, &d.CreatedAt}, func() error {
		out = append(out, d)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("claim notifications: %w", err)
	}
	return out, nil
}

// Delivered marks a delivery done.
func Delivered(ctx context.Context, q entitlement.Querier, d Delivery) error {
	if _, err := q.Exec(ctx, `UPDATE notification_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
		WHERE id = $1 AND url = $2`, d.ID, d.URL); err != nil {
		return fmt.Errorf("mark notification %s delivered: %w", d.ID, err)
	}
	return nil
}

// Retry records a failed attempt: the next one after wait, or, when giveUp, none (failed).
func Retry(ctx context.Context, q entitlement.Querier, d Delivery, cause string, wait time.Duration, giveUp bool) error {
	if _, err := q.Exec(ctx, `UPDATE notification_outbox SET attempts = attempts + 1, last_error = $3,
			next_attempt_at = now() + $4 * interval '1 millisecond', failed_at = CASE WHEN $5 THEN now() END
		WHERE id = $1 AND url = $2`, d.ID, d.URL, cause, wait.Milliseconds(), giveUp); err != nil {
		return fmt.Errorf("reschedule notification %s: %w", d.ID, err)
	}
	return nil
}

// Stats are the outbox's gauges.
type Stats struct {
	Pending, Delivered, Failed int64
	OldestPending              time.Duration // 0 when nothing is pending
}

// Count reads the outbox's Stats.
func Count(ctx context.Context, q entitlement.Querier) (Stats, error) {
	var s Stats
	var age float64
	err := q.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL),
			count(*) FILTER (WHERE delivered_at IS NOT NULL),
			count(*) FILTER (WHERE failed_at IS NOT NULL),
			coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL)), 0)::float8
		FROM notification_outbox`).Scan(&s.Pending, &s.Delivered, &s.Failed, &age)
	if err != nil {
		return Stats{}, fmt.Errorf("count notifications: %w", err)
	}
	s.OldestPending = time.Duration(age * float64(time.Second))
	return s, nil
}

// Prune deletes delivered and failed rows older than keep, so the table holds what is pending
// and a recent past.
func Prune(ctx context.Context, q entitlement.Querier, keep time.Duration) error {
	if _, err := q.Exec(ctx, `DELETE FROM notification_outbox WHERE (delivered_at IS NOT NULL OR failed_at IS NOT NULL)
		AND created_at < now() - $1 * interval '1 millisecond'`, keep.Milliseconds()); err != nil {
		return fmt.Errorf("prune notifications: %w", err)
	}
	return nil
}
