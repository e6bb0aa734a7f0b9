package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/tollgate/tollgate/testkit/freeport"
)

// contractVariables are the service variables of the outside contract that make run passes to
// the services as its user set them. HTTP_ADDR is not among them: each service gets its own
// address (LISTENER_ADDR, QUERYAPI_ADDR, PROCESSOR_ADDR).
func contractVariables() []string {
	return []string{
		"NATS_URL", "NATS_CREDS", "STREAM_REPLICAS", "DATABASE_URL",
		"STRIPE_WEBHOOK_SECRETS", "STRIPE_WEBHOOK_TOLERANCE", "MAX_BODY_BYTES",
		"USER_ID_METADATA_KEY", "PAST_DUE_GRANTS", "PLANS_FILE",
		"QUERYAPI_TOKENS", "QUERYAPI_LIVEMODE", "STRIPE_API_KEY", "STRIPE_API_BASE",
		"ADMIN_TOKENS", "NOTIFY_URLS", "NOTIFY_SECRET", "BACKFILL_INTERVAL",
	}
}

// errInUse means another checkout's make run uses the NATS server or the database this one
// would use: two stacks on one stream or one read model would take each other's events.
var errInUse = errors.New("in use by another checkout's make run")

// claimSubject is where a running make run answers with its checkout's path, so that a second
// one pointed at the same NATS server finds it.
const claimSubject = "tollgate.dev.run.checkout"

// claimLockKey is the advisory lock (key 1 of 2) a running make run holds in its database.
const claimLockKey = 0x746f6c6c // "toll"

// checkout is the working copy make run serves: DATA_DIR's absolute path names it.
type checkout struct {
	dataDir string // absolute
	dir     string // the checkout's directory: DATA_DIR's parent when DATA_DIR is .data
}

func newCheckout(dataDir string) (checkout, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return checkout{}, fmt.Errorf("DATA_DIR: %w", err)
	}
	dir := abs
	if filepath.Base(abs) == ".data" {
		dir = filepath.Dir(abs)
	}
	return checkout{dataDir: abs, dir: dir}, nil
}

// databaseURL is the default database of this checkout: tollgate_<directory>_<hash of the
// data dir>, on the contract's default server, so that two checkouts never share a read model.
func (c checkout) databaseURL() string {
	sum := sha256.Sum256([]byte(c.dataDir))
	var b strings.Builder
	for _, r := range strings.ToLower(filepath.Base(c.dir)) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() == 24 {
			break
		}
	}
	name := "tollgate_" + strings.Trim(b.String(), "_") + "_" + hex.EncodeToString(sum[:4])
	return "postgres://postgres@127.0.0.1:5432/" + name + "?sslmode=disable"
}

// natsURL is a free loopback port for this checkout's own embedded JetStream server (below the
// ephemeral range, where an outgoing connection could take it before the server binds it).
func (c checkout) natsURL() (string, error) {
	port, err := freeport.Get()
	if err != nil {
		return "", fmt.Errorf("find a port for the embedded NATS server: %w", err)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", port), nil
}

// claim is this checkout's hold on its NATS server and database while it runs.
type claim struct {
	checkout checkout
	db       *pgx.Conn
	nc       *nats.Conn
}

// claim takes the database (an advisory lock held for the whole run, by a connection named
// after the checkout) and checks that no other checkout's make run answers on the NATS server.
// It fails with errInUse, naming the other checkout.
func (c checkout) claim(ctx context.Context, natsURL, databaseURL string) (*claim, error) {
	cl := &claim{checkout: c}
	if err := cl.checkNATS(natsURL); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	// application_name holds at most 63 bytes: the end of the path says the most.
	name := "tollgate make run " + c.dir
	if len(name) > 63 {
		name = "tollgate make run …" + c.dir[len(c.dir)-(63-len("tollgate make run …")):]
	}
	cfg.RuntimeParams["application_name"] = name
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if cl.db, err = pgx.ConnectConfig(cctx, cfg); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redacted(databaseURL), err)
	}
	var got bool
	if err := cl.db.QueryRow(cctx, `SELECT pg_try_advisory_lock($1, 0)`, claimLockKey).Scan(&got); err != nil {
		cl.Close()
		return nil, fmt.Errorf("lock the database: %w", err)
	}
	if !got {
		var holder string
		_ = cl.db.QueryRow(cctx, `
			SELECT coalesce(a.application_name, '') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = 0 AND l.objsubid = 2
			  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
			claimLockKey).Scan(&holder)
		cl.Close()
		return nil, fmt.Errorf("database %s is %w (%q): set DATABASE_URL to another database, or stop that one",
			cfg.Database, errInUse, holder)
	}
	return cl, nil
}

// checkNATS asks the NATS server at natsURL, if one answers, whether another checkout's make
// run uses it. A server that does not answer is no one's yet (the stack embeds one there).
func (cl *claim) checkNATS(natsURL string) error {
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second), nats.Name("tollgate make run"))
	if err != nil {
		return nil //nolint:nilerr // nothing answers: the stack embeds this checkout's own server there
	}
	defer nc.Close()
	msg, err := nc.Request(claimSubject, nil, time.Second)
	if err != nil {
		return nil //nolint:nilerr // no make run answers (or this user may not ask): no one else's
	}
	if other := string(msg.Data); other != cl.checkout.dir {
		return fmt.Errorf("NATS at %s is %w (%s): its stream would take this checkout's events; set NATS_URL to another server, or unset it for an embedded one",
			natsURL, errInUse, other)
	}
	return fmt.Errorf("NATS at %s is %w: this checkout (%s) already runs one", natsURL, errInUse, cl.checkout.dir)
}

// answer tells every later make run pointed at the stack's NATS server which checkout uses it.
func (cl *claim) answer(natsURL string) error {
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second), nats.Name("tollgate make run"))
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", natsURL, err)
	}
	if _, err := nc.Subscribe(claimSubject, func(m *nats.Msg) { _ = m.Respond([]byte(cl.checkout.dir)) }); err != nil {
		nc.Close()
		return fmt.Errorf("answer on %s: %w", claimSubject, err)
	}
	cl.nc = nc
	return nil
}

// Close releases the claim: the database lock ends with its connection.
func (cl *claim) Close() {
	if cl.nc != nil {
		cl.nc.Close()
	}
	if cl.db != nil {
		_ = cl.db.Close(context.Background())
	}
}

// redacted is a database URL without its password, for messages.
func redacted(databaseURL string) string {
	u, err := url.Parse(databaseURL)
	if err != nil {
		return "DATABASE_URL"
	}
	return u.Redacted()
}
