package operate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tollgate/tollgate/pkg/eventstore"
	"github.com/tollgate/tollgate/pkg/failover"
	"github.com/tollgate/tollgate/processor/internal/ingest"
	"github.com/tollgate/tollgate/processor/internal/projection"
)

// Recover gives a database restored from a backup (or a promoted standby) the events the stream
// retains since from that the event store lacks, stored and derived as the consumer does, and
// prints what it did. The caller backfills from Stripe beyond the stream's window.
func Recover(ctx context.Context, js jetstream.JetStream, db eventstore.Querier, p *projection.Projector, from time.Time, stdout io.Writer, logger *slog.Logger) (failover.Regained, error) {
	r, err := failover.Regain(ctx, js, db, from, ingest.RegainApply(p, logger))
	if err != nil {
		return r, err
	}
	_, err = fmt.Fprintf(stdout, "stream: %d events retained since %s, %d of them missing from the event store and applied\n",
		r.Read, from.UTC().Format(time.RFC3339), r.Missing)
	return r, err
}
