// Package netns gives the processes of a test addresses of their own and a network between
// them that the test can cut: n network namespaces, each with one address on a bridge of this
// namespace (which has an address on it too, so the test's own processes reach every node),
// and blackhole routes inside the namespaces to cut two of them apart and heal them again.
// A blackhole route drops what is sent to the address (the sender's TCP retransmits in vain),
// which is what a partition does; this needs no qdisc (no netem on the test machines).
//
// It needs root and iproute2 (`ip`); where namespaces cannot be made, Start fails the test with
// the reason: it never skips.
package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Net is n namespaces on a bridge. Its methods are not safe for concurrent use.
type Net struct {
	bridge string
	prefix string   // the first three octets of the /24, such as 10.77.12
	names  []string // the namespaces
	cut    map[[2]int]bool
}

// Start makes n namespaces and the bridge; t.Cleanup removes them (the processes in them must
// be stopped first: register their cleanup after Start).
func Start(tb testing.TB, n int) *Net {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("netns: network namespaces need root (ip netns add); the CI runs as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Fatal("netns: no `ip` on PATH: install iproute2 (.ci/run does)")
	}
	tag := randomHex(3)
	third, _ := rand.Int(rand.Reader, big.NewInt(250))
	nt := &Net{bridge: "tgbr" + tag, prefix: fmt.Sprintf("10.197.%d", third.Int64()+1), cut: map[[2]int]bool{}}
	tb.Cleanup(nt.remove)
	if err := ip("link", "add", nt.bridge, "type", "bridge"); err != nil {
		tb.Fatalf("netns: cannot make a bridge (%v): this test needs root with CAP_NET_ADMIN", err)
	}
	steps := [][]string{
		{"addr", "add", nt.Gateway() + "/24", "dev", nt.bridge},
		{"link", "set", nt.bridge, "up"},
	}
	for i := range n {
		ns := fmt.Sprintf("tg%s-%d", tag, i)
		nt.names = append(nt.names, ns)
		host, peer := fmt.Sprintf("tgv%s%dh", tag, i), fmt.Sprintf("tgv%s%dn", tag, i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"link", "set", peer, "netns", ns},
			[]string{"link", "set", host, "master", nt.bridge},
			[]string{"link", "set", host, "up"},
			[]string{"-n", ns, "addr", "add", nt.Host(i) + "/24", "dev", peer},
			[]string{"-n", ns, "link", "set", peer, "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			tb.Fatalf("netns: %v", err)
		}
	}
	return nt
}

// Namespace is the name of namespace i (for `ip netns exec`).
func (nt *Net) Namespace(i int) string { return nt.names[i] }

// Host is the address of namespace i.
func (nt *Net) Host(i int) string { return fmt.Sprintf("%s.%d", nt.prefix, i+1) }

// Gateway is this namespace's address on the bridge, which every namespace reaches.
func (nt *Net) Gateway() string { return nt.prefix + ".254" }

// Cut drops all traffic between namespaces i and j, both ways, until Heal.
func (nt *Net) Cut(i, j int) error {
	if err := ip("-n", nt.names[i], "route", "add", "blackhole", nt.Host(j)+"/32"); err != nil {
		return err
	}
	if err := ip("-n", nt.names[j], "route", "add", "blackhole", nt.Host(i)+"/32"); err != nil {
		_ = ip("-n", nt.names[i], "route", "del", "blackhole", nt.Host(j)+"/32")
		return err
	}
	nt.cut[[2]int{i, j}] = true
	return nil
}

// Heal undoes Cut(i, j).
func (nt *Net) Heal(i, j int) error {
	err1 := ip("-n", nt.names[i], "route", "del", "blackhole", nt.Host(j)+"/32")
	err2 := ip("-n", nt.names[j], "route", "del", "blackhole", nt.Host(i)+"/32")
	delete(nt.cut, [2]int{i, j})
	if err1 != nil {
		return err1
	}
	return err2
}

func (nt *Net) remove() {
	for _, ns := range nt.names {
		_ = ip("netns", "del", ns) // takes its end of the veth pair, and so the pair, with it
	}
	_ = ip("link", "del", nt.bridge)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput() //nolint:noctx // a short-lived iproute2 call
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
