package e2e_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
)

// contractVars are the contract's variables of each service (CONTRACT.md, "Processes"), plus the
// documented extras (the listener's PUBLISH_TIMEOUT, the processor's BACKFILL_INTERVAL and
// BACKFILL_TYPES).
var contractVars = map[string][]string{ //nolint:gochecknoglobals // test table
	"listener":  {"HTTP_ADDR", "NATS_URL", "STREAM_REPLICAS", "STRIPE_WEBHOOK_SECRETS", "STRIPE_WEBHOOK_TOLERANCE", "MAX_BODY_BYTES", "PUBLISH_TIMEOUT"},
	"processor": {"HTTP_ADDR", "NATS_URL", "STREAM_REPLICAS", "DATABASE_URL", "USER_ID_METADATA_KEY", "PAST_DUE_GRANTS", "PLANS_FILE", "STRIPE_API_KEY", "STRIPE_API_BASE", "BACKFILL_INTERVAL", "BACKFILL_TYPES"},
	"queryapi":  {"HTTP_ADDR", "DATABASE_URL", "QUERYAPI_TOKENS", "QUERYAPI_LIVEMODE"},
}

var contractPorts = map[string]string{"listener": "8080", "queryapi": "8081", "processor": "8082"} //nolint:gochecknoglobals // test table

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	return root
}

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{"STRIPE_WEBHOOK_SECRETS=whsec_test", "QUERYAPI_TOKENS=tok_test"}),
		cli.WithInterpolation(true),
	)
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	return p
}

func TestComposeMatchesContract(t *testing.T) {
	t.Parallel()
	p := loadCompose(t)
	require.ElementsMatch(t, []string{"nats", "postgres", "postgres-grants", "listener", "processor", "queryapi"}, p.ServiceNames())

	for name, svc := range p.Services {
		if oneShot(svc) {
			continue
		}
		t.Run("health/"+name, func(t *testing.T) {
			require.NotNil(t, svc.HealthCheck, "every service has a health check")
			require.NotEmpty(t, svc.HealthCheck.Test)
			require.NotEmpty(t, svc.Ports, "every service publishes its port")
		})
	}

	nats := p.Services["nats"]
	require.Contains(t, volumeTargets(nats), "/data", "JetStream store on a volume")
	conf := p.Configs["nats_conf"].Content
	require.Contains(t, conf, "sync_interval: always", "fsync before ack (see README, durability)")
	require.Contains(t, conf, "jetstream")
	require.Contains(t, volumeTargets(p.Services["postgres"]), "/var/lib/postgresql/data")

	for svc, vars := range contractVars {
		s := p.Services[svc]
		t.Run("contract/"+svc, func(t *testing.T) {
			require.NotNil(t, s.Build, "built from the repo")
			require.Equal(t, "Dockerfile", s.Build.Dockerfile, "the one Dockerfile at the root")
			require.NotNil(t, s.Build.Args["SERVICE"], "the service is a build argument")
			require.Equal(t, svc, *s.Build.Args["SERVICE"])
			for _, v := range vars {
				require.Contains(t, s.Environment, v, "%s sets %s", svc, v)
			}
			require.Equal(t, ":"+contractPorts[svc], *s.Environment["HTTP_ADDR"])
			require.Equal(t, contractPorts[svc], publishedTarget(t, s, contractPorts[svc]))
			require.Equal(t, []string{"CMD", "/" + svc, "healthcheck"}, []string(s.HealthCheck.Test))
			for dep, cond := range s.DependsOn {
				want := types.ServiceConditionHealthy
				if oneShot(p.Services[dep]) {
					want = types.ServiceConditionCompletedSuccessfully
				}
				require.Equal(t, want, cond.Condition, "%s waits for %s", svc, dep)
			}
		})
	}
	require.Contains(t, p.Services["listener"].DependsOn, "nats")
	require.Contains(t, p.Services["processor"].DependsOn, "postgres")
	require.Contains(t, p.Services["processor"].DependsOn, "nats")
	require.Contains(t, p.Services["queryapi"].DependsOn, "postgres")
	require.Equal(t, "whsec_test", *p.Services["listener"].Environment["STRIPE_WEBHOOK_SECRETS"])
	require.Contains(t, *p.Services["processor"].Environment["DATABASE_URL"], "@postgres:5432/tollgate")
	// The listener is the internet-facing one: no Stripe API key, no database (CONTRACT.md).
	for _, v := range []string{"DATABASE_URL", "STRIPE_API_KEY", "STRIPE_API_BASE", "BACKFILL_INTERVAL", "BACKFILL_TYPES"} {
		require.NotContains(t, p.Services["listener"].Environment, v, "the listener does not get %s", v)
	}
}

func TestComposeRefusesMissingSecrets(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv([]string{"QUERYAPI_TOKENS=t"}))
	require.NoError(t, err)
	_, err = opts.LoadProject(context.Background())
	require.ErrorContains(t, err, "STRIPE_WEBHOOK_SECRETS")
}

// oneShot reports a service that runs once and exits (postgres-grants): no port, no health check.
func oneShot(s types.ServiceConfig) bool { return s.Restart == "no" }

func volumeTargets(s types.ServiceConfig) []string {
	var out []string
	for _, v := range s.Volumes {
		out = append(out, v.Target)
	}
	return out
}

func publishedTarget(t *testing.T, s types.ServiceConfig, published string) string {
	t.Helper()
	for _, p := range s.Ports {
		if p.Published == published {
			return strings.TrimSpace(strings.Split(p.Published, "-")[0])
		}
	}
	t.Fatalf("%s does not publish port %s", s.Name, published)
	return ""
}

// TestDockerfilesBuild reads the Dockerfile as each service's build argument makes it, runs its
// go build command on this machine, and checks the final stage: static binary, non-root,
// entrypoint is that binary, healthcheck works.
func TestDockerfilesBuild(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	buildRe := regexp.MustCompile(`^RUN (CGO_ENABLED=0 go build .*) -o /out/(\w+) (\./\w+)$`)
	for svc := range contractVars {
		t.Run(svc, func(t *testing.T) {
			t.Parallel()
			f, err := os.Open(filepath.Join(root, "Dockerfile"))
			require.NoError(t, err)
			defer f.Close()
			// Stages by name, their lines with SERVICE expanded; the last FROM names the one built.
			stages := map[string][]string{}
			var order []string
			var build []string
			cur := ""
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := strings.ReplaceAll(strings.TrimSpace(sc.Text()), "${SERVICE}", svc)
				if strings.HasPrefix(line, "FROM ") {
					f := strings.Fields(line)
					cur = f[len(f)-1]
					order = append(order, line)
				}
				stages[cur] = append(stages[cur], line)
				if m := buildRe.FindStringSubmatch(line); m != nil {
					build = m
				}
			}
			require.NoError(t, sc.Err())
			require.Equal(t, "FROM "+svc, order[len(order)-1], "SERVICE selects the service's stage")
			require.NotNil(t, build, "a CGO_ENABLED=0 go build line")
			require.Equal(t, svc, build[2])
			require.Equal(t, "./"+svc, build[3])
			final := stages[svc]
			require.Equal(t, "FROM runtime AS "+svc, final[0], "the service's stage is built on the runtime stage")
			require.Contains(t, stages["runtime"][0], "distroless/static")
			require.Contains(t, stages["runtime"], "USER nonroot:nonroot")
			require.Contains(t, final, "COPY --from=build /out/"+svc+" /"+svc)
			require.Contains(t, final, `ENTRYPOINT ["/`+svc+`"]`)

			// The same build, here: it must produce a static binary that runs.
			out := filepath.Join(t.TempDir(), svc)
			// RUN in shell form runs under /bin/sh -c, so quoting (-ldflags="-s -w") means the same here.
			cmd := exec.CommandContext(t.Context(), "/bin/sh", "-c", build[1]+" -o "+out+" "+build[3])
			cmd.Dir = root
			b, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", b)
			st, err := os.Stat(out)
			require.NoError(t, err)
			require.NotZero(t, st.Mode()&0o111, "executable")

			// The compose health check runs `<binary> healthcheck`: with nothing listening it fails.
			hc := exec.CommandContext(t.Context(), out, "healthcheck")
			hc.Env = []string{"HTTP_ADDR=127.0.0.1:1"}
			b, err = hc.CombinedOutput()
			require.Error(t, err, "healthcheck against a closed port must fail: %s", b)
			require.Contains(t, string(b), "healthcheck")
		})
	}
}
