// Package session is every statement on console_sessions, the server-side sessions of the
// processor's console, and the throttle of its failed logins.
//
// A session's id is 32 random bytes (base64url), sent only in the console's cookie; the table
// keeps its SHA-256. A session ends MaxAge after it was created, IdleTimeout after it was last
// used, at End (logout), and when the admin token it was opened with leaves ADMIN_TOKENS (the
// caller says which tokens are valid at each Lookup).
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// MaxAge is the longest a session lasts, used or not.
	MaxAge = 12 * time.Hour
	// IdleTimeout ends a session not used for that long.
	IdleTimeout = time.Hour
	// touchEvery is how stale last_used_at may get before a Lookup writes it: one write a minute
	// per session at most, not one per page.
	touchEvery = time.Minute
)

// ErrNoSession is returned by Lookup for an unknown, ended or expired session id.
var ErrNoSession = errors.New("no such session")

// Querier is what the statements need (a pool, a connection or a transaction).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Session is an open session: the name of its admin token, that token's SHA-256, and the CSRF
// token its forms carry.
type Session struct {
	Name        string
	TokenDigest [sha256.Size]byte
	CSRF        string
	Created     time.Time
	LastUsed    time.Time
}

func random() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random session id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hash(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return sum[:]
}

// Create opens a session for the token named name whose SHA-256 is digest, and returns its id
// (for the cookie only) and the session.
func Create(ctx context.Context, q Querier, name string, digest [sha256.Size]byte, now time.Time) (string, Session, error) {
	id, err := random()
	if err != nil {
		return "", Session{}, err
	}
	csrf, err := random()
	if err != nil {
		return "", Session{}, err
	}
	s := Session{Name: name, TokenDigest: digest, CSRF: csrf, Created: now, LastUsed: now}
	if _, err := q.Exec(ctx, `INSERT INTO console_sessions (id_hash, token_name, token_digest, csrf, created_at, last_used_at)
		VALUES ($1, $2, $3, $4, $5, $5)`, hash(id), name, digest[:], csrf, now); err != nil {
		return "", Session{}, fmt.Errorf("create session: %w", err)
	}
	return id, s, nil
}

// Lookup returns the open session of id at now, and marks it used. valid says whether a token
// digest is still one of ADMIN_TOKENS; a session whose token is not is ended. An unknown, ended
// or expired id gives ErrNoSession.
func Lookup(ctx context.Context, q Querier, id string, now time.Time, valid func([sha256.Size]byte) bool) (Session, error) {
	if id == "" {
		return Session{}, ErrNoSession
	}
	var s Session
	var digest []byte
	err := q.QueryRow(ctx, `SELECT token_name, token_digest, csrf, created_at, last_used_at FROM console_sessions
		WHERE id_hash = $1 AND ended_at IS NULL`, hash(id)).Scan(&s.Name, &digest, &s.CSRF, &s.Created, &s.LastUsed)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	copy(s.TokenDigest[:], digest)
	switch {
	case now.Sub(s.Created) >= MaxAge, now.Sub(s.LastUsed) >= IdleTimeout, !valid(s.TokenDigest):
		if err := End(ctx, q, id, now); err != nil {
			return Session{}, err
		}
		return Session{}, ErrNoSession
	}
	if now.Sub(s.LastUsed) >= touchEvery {
		if _, err := q.Exec(ctx, `UPDATE console_sessions SET last_used_at = $2 WHERE id_hash = $1`, hash(id), now); err != nil {
			return Session{}, fmt.Errorf("touch session: %w", err)
		}
		s.LastUsed = now
	}
	return s, nil
}

// End ends the session of id (logout); ending an unknown or ended one is not an error.
func End(ctx context.Context, q Querier, id string, now time.Time) error {
	if _, err := q.Exec(ctx, `UPDATE console_sessions SET ended_at = $2 WHERE id_hash = $1 AND ended_at IS NULL`, hash(id), now); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	return nil
}

// Prune deletes the sessions that ended or expired before now and returns how many.
func Prune(ctx context.Context, q Querier, now time.Time) (int64, error) {
	tag, err := q.Exec(ctx, `DELETE FROM console_sessions WHERE ended_at IS NOT NULL OR created_at <= $1 OR last_used_at <= $2`,
		now.Add(-MaxAge), now.Add(-IdleTimeout))
	if err != nil {
		return 0, fmt.Errorf("prune sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
