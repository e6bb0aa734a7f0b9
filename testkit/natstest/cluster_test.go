package natstest_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/natstest"
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
	_, err = js.Publish(t.Context(), "s", []byte("x"))
	require.NoError(t, err, "two of three nodes are a quorum")
	c.Restart(t, leader)
}
