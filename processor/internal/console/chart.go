package console

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// point is one value of a chart.
type point struct {
	At    time.Time
	Value float64
}

// perMinute turns a counter's points into increases per minute between neighbours.
func perMinute(points []point) []point {
	var out []point
	for i := 1; i < len(points); i++ {
		d := points[i].Value - points[i-1].Value
		secs := points[i].At.Sub(points[i-1].At).Seconds()
		if d < 0 || secs <= 0 { // a new stream or a restart: no rate across it
			continue
		}
		out = append(out, point{At: points[i].At, Value: d * 60 / secs})
	}
	return out
}

const (
	width, height = 300.0, 72.0
	padTop        = 6.0
	padBottom     = 14.0
)

// chart is an SVG line chart of points from..to, titled title, values formatted by format, with
// a dashed line at limit when limit > 0 (the value that needs action). An empty series says so.
func chart(title string, points []point, from, to time.Time, limit float64, format func(float64) string) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" width="100%%" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		width, height, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<title>%s</title>`, template.HTMLEscapeString(title))
	plotH := height - padTop - padBottom
	fmt.Fprintf(&b, `<line x1="0" y1="%.1f" x2="%g" y2="%.1f" stroke="#bbb" stroke-width="1"/>`, padTop+plotH, width, padTop+plotH)
	if len(points) == 0 {
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" font-size="11" text-anchor="middle" fill="#777">no samples yet</text></svg>`, width/2, padTop+plotH/2)
		return template.HTML(b.String()) //nolint:gosec // built from numbers and escaped text only
	}
	top := limit * 1.1
	for _, p := range points {
		top = math.Max(top, p.Value)
	}
	if top <= 0 {
		top = 1
	}
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 { return math.Max(0, math.Min(width, t.Sub(from).Seconds()/span*width)) }
	y := func(v float64) float64 { return padTop + plotH - v/top*plotH }
	if limit > 0 {
		fmt.Fprintf(&b, `<line x1="0" y1="%.1f" x2="%g" y2="%.1f" stroke="#c62828" stroke-width="1" stroke-dasharray="4 3"/>`, y(limit), width, y(limit))
	}
	var pts strings.Builder
	for _, p := range points {
		fmt.Fprintf(&pts, "%.1f,%.1f ", x(p.At), y(p.Value))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1565c0" stroke-width="1.5"/>`, strings.TrimSpace(pts.String()))
	last := points[len(points)-1]
	fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="#1565c0"/>`, x(last.At), y(last.Value))
	fmt.Fprintf(&b, `<text x="0" y="%g" font-size="10" fill="#555">%s ago</text>`, height-2, template.HTMLEscapeString(humanAge(to.Sub(from))))
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" fill="#555" text-anchor="end">now %s, max %s</text>`,
		width, height-2, template.HTMLEscapeString(format(last.Value)), template.HTMLEscapeString(format(top)))
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from numbers and escaped text only
}

// humanBytes is n in the binary units people read: 512 B, 3.2 KiB, 10 GiB.
func humanBytes(n float64) string {
	unit := "B"
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		if n < 1024 {
			break
		}
		n, unit = n/1024, u
	}
	if unit == "B" || n >= 100 || n == math.Trunc(n) {
		return fmt.Sprintf("%.0f %s", n, unit)
	}
	return fmt.Sprintf("%.1f %s", n, unit)
}

// humanAge is a duration as people say it: "12 s", "3 min", "2 h 5 min", "4 days".
func humanAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		if m := int(d.Minutes()) % 60; m != 0 {
			return fmt.Sprintf("%d h %d min", int(d.Hours()), m)
		}
		return fmt.Sprintf("%d h", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	}
}
