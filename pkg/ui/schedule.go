package ui

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/schedule"
)

// ScheduleText is a schedule and its last run, as lines.
func ScheduleText(s *schedule.Spec, r *schedule.Run, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule: window %s (%s), every %s, CronJob %s, image %s\n", s.Window, s.TimeZone, s.Every, s.CronJob, s.Image)
	if r == nil {
		b.WriteString("last run: none yet\n")
		return b.String()
	}
	fmt.Fprintf(&b, "last run: %s (%s ago): %s: %s\n", r.Time.Format(time.RFC3339), now.Sub(r.Time).Round(time.Second), r.Result, r.Message)
	if !r.NextRun.IsZero() {
		fmt.Fprintf(&b, "next window: %s\n", r.NextRun.Format(time.RFC3339))
	}
	return b.String()
}
