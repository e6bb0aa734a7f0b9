package console

import (
	"fmt"
	"html/template"
	"strconv"
	"time"

	"github.com/tollgate/tollgate/processor/internal/operate"
)

// pipelineRow is one line of the pipeline page: its value in units people read, and its
// health: ok (normal), warn (look soon) or bad (needs action now), as the alerts judge it.
type pipelineRow struct {
	ID, Name, Health, Hint string
	Value                  template.HTML
}

// pipelineChart is one chart of the last hour.
type pipelineChart struct {
	Title string
	SVG   template.HTML
}

func esc(s string) template.HTML { return template.HTML(template.HTMLEscapeString(s)) } //nolint:gosec // escaped

// pipelineRows judges each part of p; the thresholds are the alerts' (docs/alerts.md).
func pipelineRows(p operate.PipelineStatus) []pipelineRow {
	var rows []pipelineRow
	health := func(bad, warn bool) string {
		switch {
		case bad:
			return "bad"
		case warn:
			return "warn"
		}
		return "ok"
	}
	ageHealth := health(p.OldestAge >= 5*time.Minute, p.OldestAge >= time.Minute)
	if p.ConsumerErr != "" {
		rows = append(rows, pipelineRow{ID: "lag", Name: "consumer lag", Health: "bad", Value: esc(p.ConsumerErr)})
	} else {
		rows = append(rows, pipelineRow{ID: "lag", Name: "consumer lag", Health: ageHealth,
			Value: esc(fmt.Sprintf("%d pending, %d in flight", p.Pending, p.AckPending)), Hint: "events not yet applied"})
	}
	switch {
	case p.StreamErr != "":
		rows = append(rows, pipelineRow{ID: "oldest", Name: "oldest unapplied event", Health: "bad", Value: esc(p.StreamErr)})
	case p.OldestAge == 0:
		rows = append(rows, pipelineRow{ID: "oldest", Name: "oldest unapplied event", Health: "ok", Value: "none: every event is applied"})
	default:
		rows = append(rows, pipelineRow{ID: "oldest", Name: "oldest unapplied event", Health: ageHealth,
			Value: esc(humanAge(p.OldestAge) + " waiting"), Hint: "over 5 min pages (TollgateEventsNotApplied)"})
	}
	if p.StreamErr == "" {
		v := fmt.Sprintf("%s in %d messages", humanBytes(float64(p.Bytes)), p.StreamMsgs)
		h := "ok"
		if p.MaxBytes > 0 {
			fill := float64(p.Bytes) / float64(p.MaxBytes)
			v += fmt.Sprintf(" of %s (%.0f%%)", humanBytes(float64(p.MaxBytes)), fill*100)
			h = health(fill >= 0.5, fill >= 0.25)
		}
		rows = append(rows, pipelineRow{ID: "stream", Name: "stream usage", Health: h, Value: esc(v), Hint: "over half full pages (TollgateStreamFilling)"})
	}
	rows = append(rows, pipelineRow{ID: "deadletters", Name: "dead letters", Health: health(false, p.DeadLetters > 0),
		Value: template.HTML(`<a href="/admin/dead-letters">` + strconv.FormatInt(p.DeadLetters, 10) + `</a>`), //nolint:gosec // a number
		Hint:  "each needs a fix, then a redrive"})
	if p.NotifyErr != "" {
		rows = append(rows, pipelineRow{ID: "notify", Name: "notification backlog", Health: "bad", Value: esc(p.NotifyErr)})
	} else {
		n := p.Notify
		v := fmt.Sprintf("%d pending", n.Pending)
		if n.Pending > 0 {
			v += " (oldest " + humanAge(n.OldestPending) + ")"
		}
		v += fmt.Sprintf(", %d given up, %d delivered", n.Failed, n.Delivered)
		rows = append(rows, pipelineRow{ID: "notify", Name: "notification backlog", Health: health(n.OldestPending >= time.Hour, n.Failed > 0 || n.OldestPending >= 5*time.Minute),
			Value: esc(v), Hint: "retried for 24 h, then given up"})
	}
	if p.RepairsErr != "" {
		rows = append(rows, pipelineRow{ID: "repairs", Name: "open repairs", Health: "bad", Value: esc(p.RepairsErr)})
	} else {
		v, open := "none", 0
		if len(p.Repairs) > 0 {
			v = ""
			for k, n := range p.Repairs {
				v += fmt.Sprintf("%d %s ", n, k)
				open += n
			}
		}
		rows = append(rows, pipelineRow{ID: "repairs", Name: "open repairs", Health: health(false, open > 0), Value: esc(v)})
	}
	switch {
	case p.BackfillErr != "":
		rows = append(rows, pipelineRow{ID: "backfill", Name: "last scheduled backfill", Health: "bad", Value: esc(p.BackfillErr)})
	case p.Backfill == nil:
		rows = append(rows, pipelineRow{ID: "backfill", Name: "last scheduled backfill", Health: "ok", Value: "never (BACKFILL_INTERVAL off, or not yet)"})
	default:
		rows = append(rows, pipelineRow{ID: "backfill", Name: "last scheduled backfill", Health: "ok",
			Value: template.HTML(fmt.Sprintf("%s ago on %s (%s)", esc(humanAge(p.ReadAt.Sub(p.Backfill.FinishedAt))), esc(p.Backfill.Instance), timestamp(p.Backfill.FinishedAt)))}) //nolint:gosec // escaped parts
	}
	switch {
	case p.ReconcileErr != "":
		rows = append(rows, pipelineRow{ID: "reconcile", Name: "last reconcile", Health: "bad", Value: esc(p.ReconcileErr)})
	case p.Reconcile == nil:
		rows = append(rows, pipelineRow{ID: "reconcile", Name: "last reconcile", Health: "ok", Value: "never (run processor reconcile)"})
	default:
		r := p.Reconcile
		rows = append(rows, pipelineRow{ID: "reconcile", Name: "last reconcile", Health: health(false, r.Drift > 0),
			Value: template.HTML(fmt.Sprintf("%s ago (%s): %s", esc(humanAge(p.ReadAt.Sub(r.FinishedAt))), esc(r.Scope), //nolint:gosec // escaped parts
				esc(fmt.Sprintf("%d drift in %d customers, %d customers and %d subscriptions compared", r.Drift, r.DriftCustomers, r.Customers, r.Subscriptions))))})
	}
	return rows
}

// pipelineCharts draws the last hour of samples, up to now.
func pipelineCharts(samples []operate.Sample, now time.Time) []pipelineChart {
	from := now.Add(-operate.HistoryWindow)
	series := func(f func(operate.Sample) float64) []point {
		out := make([]point, 0, len(samples))
		for _, s := range samples {
			out = append(out, point{At: s.At, Value: f(s)})
		}
		return out
	}
	count := func(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
	age := func(v float64) string { return humanAge(time.Duration(v) * time.Second) }
	return []pipelineChart{
		{"events applied per minute", chart("events applied per minute", perMinute(series(func(s operate.Sample) float64 { return float64(s.AckFloor) })), from, now, 0, count)},
		{"consumer lag (events)", chart("consumer lag (events)", series(func(s operate.Sample) float64 { return s.Pending }), from, now, 0, count)},
		{"oldest unapplied event", chart("oldest unapplied event", series(func(s operate.Sample) float64 { return s.OldestAge }), from, now, 300, age)},
		{"notifications pending", chart("notifications pending", series(func(s operate.Sample) float64 { return s.NotifyPending }), from, now, 0, count)},
		{"dead letters", chart("dead letters", series(func(s operate.Sample) float64 { return s.DeadLetters }), from, now, 0, count)},
	}
}
