package rig

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tollgate/tollgate/e2e/load"
)

// Metrics are the samples of one /metrics answer, by series ("name" or `name{labels}` as the
// exposition writes it).
type Metrics map[string]float64

// Scrape reads a service's /metrics (Prometheus text format) at base.
func Scrape(ctx context.Context, c *http.Client, base string) (Metrics, error) {
	a, err := load.Get(ctx, c, base+"/metrics", "")
	if err := load.Want200(a, err); err != nil {
		return nil, fmt.Errorf("scrape %s/metrics: %w", base, err)
	}
	m := Metrics{}
	sc := bufio.NewScanner(bytes.NewReader(a.Body))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Sum adds the samples of every series of metric name whose labels contain each of match
// (such as `outcome="ack"`).
func (m Metrics) Sum(name string, match ...string) float64 {
	var sum float64
	for series, v := range m {
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, want := range match {
			ok = ok && strings.Contains(labels, want)
		}
		if ok {
			sum += v
		}
	}
	return sum
}

// RSS is a process's resident memory in bytes, from /proc/<pid>/status.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// Machine describes where a run happens, for the header of a results table.
type Machine struct {
	CPUs     int
	CPUModel string
	Go       string
	NATS     string
	Postgres string
	LoadAvg  string // /proc/loadavg's first three fields at the time of Describe
}

// Describe reads the machine's CPU, load and Postgres version (through databaseURL).
func Describe(ctx context.Context, databaseURL, natsVersion string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPUModel: "unknown", Go: runtime.Version(), NATS: natsVersion, Postgres: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	m.LoadAvg = LoadAvg()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(cctx, databaseURL); err == nil {
		var v string
		if conn.QueryRow(cctx, "SHOW server_version").Scan(&v) == nil {
			m.Postgres = "PostgreSQL " + v
		}
		_ = conn.Close(cctx)
	}
	return m
}

// LoadAvg is /proc/loadavg's 1, 5 and 15 minute load averages.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
