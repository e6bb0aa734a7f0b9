package stream

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// PurgeApplied removes from the stream every message at or below cons's ack floor and returns
// the floor, unless the floor is 0 or purged (nothing acknowledged since the last purge: then no
// request is made). Every message at or below a durable consumer's ack floor is acknowledged
// (applied and committed, or dead-lettered), whatever other instances share the consumer and
// whatever waits for a delayed redelivery, so it never removes an unapplied event. On an error
// it returns purged: the next call purges what this one could not.
func PurgeApplied(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, purged uint64) (uint64, error) {
	info, err := cons.Info(ctx)
	if err != nil {
		return purged, fmt.Errorf("purge applied events: consumer info: %w", err)
	}
	// A floor below the last purge's means the consumer or the stream was recreated: purging to
	// it is a harmless no-op, and the next floors count from it.
	floor := info.AckFloor.Stream
	if floor == 0 || floor == purged {
		return floor, nil
	}
	s, err := js.Stream(ctx, Name)
	if err == nil {
		// WARNING: purge below floor+1 (the floor itself is acknowledged, floor+1 may not be),
		// never past it: a message above the floor may be unapplied, and a purged message is gone.
		err = s.Purge(ctx, jetstream.WithPurgeSequence(floor+1))
	}
	if err != nil {
		return purged, fmt.Errorf("purge applied events up to %d: %w", floor, err)
	}
	return floor, nil
}
