package operate

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/pkg/catalogue"
	"github.com/tollgate/tollgate/pkg/config"
	"github.com/tollgate/tollgate/pkg/grant"
	"github.com/tollgate/tollgate/pkg/outbox"
	"github.com/tollgate/tollgate/pkg/scope"
	"github.com/tollgate/tollgate/processor/internal/projection"
)

// GiveGrant validates a new grant at now against the projector's rules (grant.New.Validate: a
// refusal wraps grant.ErrInvalid and says why), stores it and rewrites its user's answer with it,
// in one transaction with the notification, as an event would. It returns the stored grant.
func GiveGrant(ctx context.Context, p *projection.Projector, n grant.New, now time.Time) (grant.Grant, error) {
	n, err := n.Validate(now, p.Rules)
	if err != nil {
		return grant.Grant{}, err
	}
	var g grant.Grant
	err = grantTx(ctx, p, func(tx pgx.Tx) ([]scope.Key, error) {
		var err error
		if g, err = grant.Create(ctx, tx, n); err != nil {
			return nil, err
		}
		// The query API's OpenFeature endpoint answers only names it knows: a grant's names
		// become flags in the same transaction as the grant.
		names := append(catalogue.Features(n.Features...), catalogue.Limits(slices.Sorted(maps.Keys(n.Limits))...)...)
		return []scope.Key{g.User()}, catalogue.Add(ctx, tx, catalogue.SourceGrant, names)
	})
	return g, err
}

// RevokeGrant ends a grant at once, by the named token and for a reason, and rewrites its user's
// answer without it, in one transaction with the notification. It returns the ended grant;
// errors wrap grant.ErrNotFound or grant.ErrEnded (an ended grant stays as it ended).
func RevokeGrant(ctx context.Context, p *projection.Projector, id, by, reason string) (grant.Grant, error) {
	var g grant.Grant
	err := grantTx(ctx, p, func(tx pgx.Tx) ([]scope.Key, error) {
		var err error
		g, err = grant.Revoke(ctx, tx, id, by, reason)
		return []scope.Key{g.User()}, err
	})
	return g, err
}

// ListGrants is every grant of a user in a scope, active and ended, oldest first.
func ListGrants(ctx context.Context, q grant.Querier, user scope.Key) ([]grant.Grant, error) {
	return grant.List(ctx, q, user)
}

// ExpireGrants ends up to batch grants whose until has come and rewrites their users' answers,
// in one transaction with the notifications, and returns them. Several processors may run it at
// once: grant.ExpireDue takes each due grant in exactly one transaction (FOR UPDATE SKIP LOCKED),
// so each grant expires once.
func ExpireGrants(ctx context.Context, p *projection.Projector, batch int) ([]grant.Grant, error) {
	var gs []grant.Grant
	err := grantTx(ctx, p, func(tx pgx.Tx) ([]scope.Key, error) {
		var err error
		if gs, err = grant.ExpireDue(ctx, tx, batch); err != nil {
			return nil, err
		}
		seen := make(map[scope.Key]bool, len(gs))
		var users []scope.Key
		for _, g := range gs {
			if k := g.User(); !seen[k] {
				seen[k] = true
				users = append(users, k)
			}
		}
		return users, nil
	})
	return gs, err
}

// grantTx runs change in a READ COMMITTED transaction (the projection's isolation: the user rows
// are rebuilt from what other transactions committed while this one waited for a user's lock),
// then rewrites the users it names through the projector and records their notifications, and
// publishes them once committed.
func grantTx(ctx context.Context, p *projection.Projector, change func(tx pgx.Tx) ([]scope.Key, error)) error {
	var notes []outbox.Change
	err := pgx.BeginTxFunc(ctx, p.DB, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		users, err := change(tx)
		if err != nil {
			return err
		}
		slices.SortFunc(users, scope.Compare)
		// WARNING: the grant changes before the users' rows are rebuilt under their locks, in
		// this transaction: a projection of the same user that takes a lock after us reads the
		// grant once we commit, and one that held it before us committed the customer rows we
		// read. A rebuild in a separate transaction could interleave with one and lose the grant.
		notes, err = p.RefreshUsers(ctx, tx, users)
		return err
	})
	if err != nil {
		return err
	}
	p.Notify.Committed(notes)
	return nil
}

// GrantExpiry is the background service that expires grants with no request needed: it runs
// ExpireGrants as soon as the next until has come, and at least every MaxWait (a grant given on
// another processor), so that an answer changes within MaxWait plus one transaction of its until.
type GrantExpiry struct {
	Proj *projection.Projector
	// Q reads the next due until (the pool).
	Q       grant.Querier
	Log     *slog.Logger
	Batch   int           // grants per transaction
	MaxWait time.Duration // the longest sleep between two looks
	// Expired, when set, is called with each batch expired (metrics, tests).
	Expired func([]grant.Grant)
}

// Run expires due grants until ctx is done.
func (e *GrantExpiry) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		gs, err := ExpireGrants(ctx, e.Proj, e.Batch)
		switch {
		case err != nil && ctx.Err() == nil:
			e.Log.Warn("expire grants", "error", err)
		case len(gs) > 0:
			for _, g := range gs {
				e.Log.Info("grant expired", "grant", g.ID, "user", g.UserID, "scope", g.Scope().String(), "until", g.Until)
			}
			if e.Expired != nil {
				e.Expired(gs)
			}
		}
		if len(gs) == e.Batch {
			timer.Reset(0) // more may be due
			continue
		}
		timer.Reset(e.wait(ctx))
	}
}

// wait is how long to sleep before the next look: until the next until (the database's clock
// decides when it is due; a few milliseconds late is the next look's), at most MaxWait.
func (e *GrantExpiry) wait(ctx context.Context) time.Duration {
	next, ok, err := grant.NextDue(ctx, e.Q)
	if err != nil || !ok {
		return e.MaxWait
	}
	return min(max(time.Until(next), 0), e.MaxWait)
}

// FormatGrant is one grant as processor grant list prints it.
func FormatGrant(g grant.Grant) string {
	until := "until revoked"
	if g.Until != nil {
		until = "until " + g.Until.Format(time.RFC3339)
	}
	state := "active"
	if g.EndedAt != nil {
		state = fmt.Sprintf("%s %s", *g.EndedWhy, g.EndedAt.Format(time.RFC3339))
	}
	return fmt.Sprintf("%s\t%s\t%v\t%v\t%s\t%s\t%s: %s", g.ID, g.UserID, g.Features, g.Limits, until, state, g.By, g.Reason)
}

// actorKey is the context key of the name of the admin a request acts for.
type actorKey struct{}

// WithActor is ctx carrying the name of the ADMIN_TOKENS entry a request was authenticated
// with (the bearer token of the admin API, the session of the console): the author a change
// records, found one way for both.
func WithActor(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, actorKey{}, name)
}

// Actor is the name WithActor put in ctx, else config.DefaultAdminName.
func Actor(ctx context.Context) string {
	if name, ok := ctx.Value(actorKey{}).(string); ok && name != "" {
		return name
	}
	return config.DefaultAdminName
}
