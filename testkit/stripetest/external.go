package stripetest

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// ExternalEvent is one body of the external events: Name is its path under events/.
type ExternalEvent struct {
	Name string
	Raw  []byte
}

// ExternalEventsDir is the directory of the external events (567 event bodies from other
// projects' test suites; its README names their sources): testdata/external-events of this
// package, inside the repository, so that the tests need nothing beside the clone.
func ExternalEventsDir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatalf("stripetest: cannot locate the package source")
	}
	return filepath.Join(filepath.Dir(file), "testdata", "external-events")
}

// ExternalEvents returns every body under events/ of ExternalEventsDir, sorted by name. It fails
// the test, never skips it, when the directory is missing.
func ExternalEvents(tb testing.TB) []ExternalEvent {
	tb.Helper()
	root := filepath.Join(ExternalEventsDir(tb), "events")
	var out []ExternalEvent
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out = append(out, ExternalEvent{Name: rel, Raw: raw})
		return nil
	})
	if err != nil || len(out) == 0 {
		tb.Fatalf("stripetest: external events in %s: %v (%d found)", root, err, len(out))
	}
	slices.SortFunc(out, func(a, b ExternalEvent) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Corpus is every event body of the captured fixtures (pkg/testdata/stripe-events/*.json) and of
// the external events, in that order: the real payloads the JSON benchmarks read.
func Corpus(tb testing.TB) [][]byte {
	tb.Helper()
	names, err := filepath.Glob(filepath.Join(FixtureDir(tb), "*.json"))
	if err != nil {
		tb.Fatal(err)
	}
	out := make([][]byte, 0, len(names)+600)
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, raw)
	}
	for _, e := range ExternalEvents(tb) {
		out = append(out, e.Raw)
	}
	return out
}
