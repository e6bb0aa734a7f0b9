package subscription_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/pkg/subscription"
)

// TestResumeEqualsDerive is the checkpoint's equivalence property: events arrive one at a time
// as Stripe might deliver them (any order, some more than once, so some arrive late, at or
// before the checkpoint), and after each arrival the state resumed from the last checkpoint
// (written to JSON and read back) with the stored events after it, or derived from scratch when
// the arrival is not after the checkpoint, equals Derive of everything stored so far.
func TestResumeEqualsDerive(t *testing.T) {
	t.Parallel()
	histories := 200
	if testing.Short() {
		histories = 50
	}
	rules := subscription.DefaultRules()
	resumed, scratch := 0, 0
	for seed := range uint64(histories) {
		events := decodeAll(t, generate(t, seed, cus).raws)
		r := rand.New(rand.NewPCG(seed, 3))
		delivered := deliver(r, events)
		if seed%4 == 0 {
			// Mostly in order, as a live endpoint receives them, with a few late arrivals.
			subscription.Order(delivered)
			for range 1 + r.IntN(3) {
				i, j := r.IntN(len(delivered)), r.IntN(len(delivered))
				delivered[i], delivered[j] = delivered[j], delivered[i]
			}
		}
		var stored []subscription.Event
		var encoded []byte
		for n, e := range delivered {
			stored = append(stored, e)
			want := subscription.Derive(cus, stored, rules)
			var got subscription.State
			var next subscription.Checkpoint
			var err error
			var cp subscription.Checkpoint
			if encoded != nil {
				require.NoError(t, json.Unmarshal(encoded, &cp))
			}
			if encoded != nil && e.Created > cp.Created {
				var tail []subscription.Event
				for _, s := range stored {
					if s.Created > cp.Created {
						tail = append(tail, s)
					}
				}
				got, next, err = subscription.Resume(cus, &cp, tail, rules)
				resumed++
			} else {
				got, next, err = subscription.Resume(cus, nil, stored, rules)
				scratch++
			}
			require.NoError(t, err, "seed %d, arrival %d", seed, n)
			require.Equal(t, want, got, "seed %d, arrival %d", seed, n)
			require.Less(t, next.Created, want.LastEventCreated, "seed %d, arrival %d", seed, n)
			encoded, err = json.Marshal(next)
			require.NoError(t, err)
		}
	}
	require.Positive(t, resumed)
	require.Positive(t, scratch)
	t.Logf("%d arrivals resumed from a checkpoint, %d derived from scratch", resumed, scratch)
}

func TestResumeRefuses(t *testing.T) {
	t.Parallel()
	events := decodeAll(t, generate(t, 7, cus).raws)
	rules := subscription.DefaultRules()
	_, cp, err := subscription.Resume(cus, nil, events, rules)
	require.NoError(t, err)

	_, _, err = subscription.Resume(cus, &cp, events, rules)
	require.ErrorIs(t, err, subscription.ErrBeforeCheckpoint)

	other := cp
	other.Version++
	_, _, err = subscription.Resume(cus, &other, nil, rules)
	require.ErrorIs(t, err, subscription.ErrCheckpointInvalid)

	otherKey := rules
	otherKey.UserIDMetadataKey = "app_user"
	_, _, err = subscription.Resume(cus, &cp, nil, otherKey)
	require.ErrorIs(t, err, subscription.ErrCheckpointInvalid)
}
