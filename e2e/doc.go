// Package e2e proves Tollgate end to end: it starts the real bin/ programs against a real
// Postgres and a real NATS server, drives them with Stripe-signed traffic, and judges them only
// through their HTTP surfaces. The crash tests (crash_test.go) kill or stop each part under
// traffic, and also read the event store and the stream to prove nothing was lost or stored
// twice. The cluster test (cluster_test.go) does the same against a three-node JetStream cluster
// with a replicated stream and two of every service, killing the stream's leader. It also checks
// the docker-compose stack against the contract.
//
// It is its own module so the load generators and compose-go stay out of the services' builds.
package e2e
