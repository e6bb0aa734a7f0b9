package stream

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// A replicated stream must not be scaled down to one copy by a listener or processor starting;
// a single test server cannot hold replicas, so this checks the merge itself.
func TestKeepOperatorSettings(t *testing.T) {
	t.Parallel()
	existing := jetstream.StreamConfig{Replicas: 3, MaxBytes: 50 << 30}
	got := Config(keepOperatorSettings(Options{}, existing))
	if got.Replicas != 3 || got.MaxBytes != 50<<30 {
		t.Fatalf("zero options: replicas %d, max bytes %d; want the existing 3 and 50 GiB", got.Replicas, got.MaxBytes)
	}
	got = Config(keepOperatorSettings(Options{Replicas: 5, MaxBytes: 1 << 30}, existing))
	if got.Replicas != 5 || got.MaxBytes != 1<<30 {
		t.Fatalf("explicit options: replicas %d, max bytes %d; want 5 and 1 GiB", got.Replicas, got.MaxBytes)
	}
	got = Config(keepOperatorSettings(Options{}, jetstream.StreamConfig{Replicas: 1, MaxBytes: -1}))
	if got.MaxBytes != -1 {
		t.Fatalf("an uncapped stream got max bytes %d; want it kept uncapped (-1)", got.MaxBytes)
	}
	got = Config(keepOperatorSettings(Options{}, jetstream.StreamConfig{}))
	if got.Replicas != 1 || got.MaxBytes != DefaultMaxBytes {
		t.Fatalf("nothing set anywhere: replicas %d, max bytes %d; want the defaults", got.Replicas, got.MaxBytes)
	}
}
