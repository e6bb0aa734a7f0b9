package console

import (
	"encoding/xml"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tollgate/tollgate/processor/internal/operate"
)

// The charts are well-formed SVG with no script and no inline style (the console's CSP), the
// text in them escaped; an empty series says so.
func TestChartsAreInlineSVG(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	var samples []operate.Sample
	for i := range 120 {
		samples = append(samples, operate.Sample{At: t0.Add(time.Duration(i) * 30 * time.Second), AckFloor: uint64(i * 40),
			Pending: float64(i % 7), OldestAge: float64(i * 5), NotifyPending: 1, DeadLetters: 2})
	}
	charts := pipelineCharts(samples, t0.Add(time.Hour))
	require.Len(t, charts, 5)
	charts = append(charts, pipelineCharts(nil, t0)...)
	for _, c := range charts {
		svg := string(c.SVG)
		require.NoError(t, xml.Unmarshal([]byte(svg), new(struct{})), "%s: %s", c.Title, svg)
		require.NotContains(t, svg, "<script")
		require.NotContains(t, svg, "style=")
	}
	require.Contains(t, string(charts[0].SVG), "now 80,", "40 events per 30 s")
	require.Contains(t, string(charts[2].SVG), "stroke-dasharray", "the alert's threshold")
	require.Contains(t, string(charts[5].SVG), "no samples yet")
	require.NotContains(t, string(chart("a <b>", nil, t0, t0, 0, humanBytes)), "<b>")
}

func TestUnitsPeopleRead(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{0: "0 B", 512: "512 B", 1536: "1.5 KiB", 10 << 30: "10 GiB", 3.5 * (1 << 20): "3.5 MiB"} {
		require.Equal(t, want, humanBytes(in))
	}
	for in, want := range map[time.Duration]string{12 * time.Second: "12 s", 3 * time.Minute: "3 min", 125 * time.Minute: "2 h 5 min", 100 * time.Hour: "4 days"} {
		require.Equal(t, want, humanAge(in))
	}
	require.True(t, strings.HasPrefix(string(timestamp(time.Date(2026, 12, 7, 5, 4, 3, 2, time.UTC))),
		`<time datetime="2026-12-07T05:04:03.000000002Z" title="2026-12-07T05:04:03.000000002Z">7 Dec 2026 05:04:03 UTC</time>`))
	require.Equal(t, "–", string(timestamp((*time.Time)(nil))))
}
