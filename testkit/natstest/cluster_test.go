package natstest_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/natstest"
	"github.com/tollgate/tollgate/testkit/wait"
)

// The cluster holds an R3 stream, and a node shut down and restarted rejoins it.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	js := c.JetStream(t)
	s, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}, Replicas: 3, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	require.NotNil(t, s.CachedInfo().Cluster)
	leader := c.Node(t, s.CachedInfo().Cluster.Leader)
	leader.Shutdown()
	// Until the two left elect a leader (about 5 s) a publish times out, as a listener's would
	// (503, and Stripe retries): the quorum takes it once they have.
	wait.For(t, 30*time.Second, "a publish to the two nodes left (a quorum)", func() bool {
		_, err := js.Publish(t.Context(), "s", []byte("x"))
		return err == nil
	})
	c.Restart(t, leader)
}
