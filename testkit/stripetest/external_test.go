package stripetest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/testkit/stripetest"
)

// The external events are test data of the repository: a bare clone, with nothing beside it,
// runs every test that reads them.
func TestExternalEventsLiveInTheRepository(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join(stripetest.FixtureDir(t), "..", "..", ".."))
	require.NoError(t, err)
	dir, err := filepath.Abs(stripetest.ExternalEventsDir(t))
	require.NoError(t, err)
	rel, err := filepath.Rel(root, dir)
	require.NoError(t, err)
	require.False(t, strings.HasPrefix(rel, ".."), "%s is outside the repository %s", dir, root)
	require.Len(t, stripetest.ExternalEvents(t), 567)
	require.FileExists(t, filepath.Join(dir, "README.md"), "the README names the events' sources")
}

// No Go file of the repository reaches for a directory beside it (the shared notes of the
// machine the project was written on are not part of a clone).
func TestNothingReadsBesideTheRepository(t *testing.T) {
	t.Parallel()
	root := filepath.Join(stripetest.FixtureDir(t), "..", "..", "..")
	// Spelled in pieces so that this file does not find itself.
	needles := []string{"../" + "sha" + "red", `"..", "` + "sha" + `red"`, "TOLLGATE_EXTERNAL" + "_EVENTS"}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || d.Name() == "bin") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if strings.Contains(string(src), n) { // not NotContains: it would print the whole file
				t.Errorf("%s reads beside the repository (%s)", path, n)
			}
		}
		return nil
	})
	require.NoError(t, err)
}
