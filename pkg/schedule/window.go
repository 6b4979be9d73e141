// Package schedule owns the maintenance window of `tls schedule`: parsing
// "Sat 02:00-04:00", telling whether a time is inside it and when the
// occurrence ends, the next start, the CronJob schedule that fires in it,
// and the objects of the in-cluster runner (CronJob, ServiceAccount, Role,
// RoleBinding). Pure: no Kubernetes I/O.
package schedule

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly maintenance window: it starts at Start (minutes after
// midnight) on each of Days and lasts Length (at most a day; it may run
// past midnight into the next day).
type Window struct {
	Days   []time.Weekday
	Start  int
	Length time.Duration
	text   string
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWindow reads "DAYS HH:MM-HH:MM": DAYS is "daily", a day ("Sat"), a
// range ("Mon-Fri") or a list ("Sat,Sun"); an end before the start is on
// the next day.
func ParseWindow(s string) (Window, error) {
	w := Window{text: strings.TrimSpace(s)}
	f := strings.Fields(s)
	if len(f) != 2 {
		return w, fmt.Errorf("window %q: want DAYS HH:MM-HH:MM, such as \"Sat 02:00-04:00\", \"Mon-Fri 01:00-02:30\" or \"daily 23:00-01:00\"", s)
	}
	days, err := parseDays(f[0])
	if err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	from, to, ok := strings.Cut(f[1], "-")
	if !ok {
		return w, fmt.Errorf("window %q: want HH:MM-HH:MM after the days", s)
	}
	start, err := parseClock(from)
	if err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	end, err := parseClock(to)
	if err != nil {
		return w, fmt.Errorf("window %q: %w", s, err)
	}
	length := end - start
	if length <= 0 {
		length += 24 * 60
	}
	w.Days, w.Start, w.Length = days, start, time.Duration(length)*time.Minute
	return w, nil
}

func (w Window) String() string { return w.text }

func parseDays(s string) ([]time.Weekday, error) {
	if strings.EqualFold(s, "daily") || s == "*" {
		return []time.Weekday{0, 1, 2, 3, 4, 5, 6}, nil
	}
	set := map[time.Weekday]bool{}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		from, ok := dayNames[strings.ToLower(a)]
		if !ok {
			return nil, fmt.Errorf("%q is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun, or daily)", a)
		}
		to := from
		if isRange {
			if to, ok = dayNames[strings.ToLower(b)]; !ok {
				return nil, fmt.Errorf("%q is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)", b)
			}
		}
		for d := from; ; d = (d + 1) % 7 {
			set[d] = true
			if d == to {
				break
			}
		}
	}
	var out []time.Weekday
	for d := range set {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, fmt.Errorf("%q is not a time of day (HH:MM)", s)
	}
	return hh*60 + mm, nil
}

// Occurrence is the window's occurrence that holds t (in loc), and whether
// there is one: its start and end.
func (w Window) Occurrence(t time.Time, loc *time.Location) (start, end time.Time, ok bool) {
	t = t.In(loc)
	// The occurrence that holds t started today or yesterday.
	for back := 0; back <= 1; back++ {
		day := time.Date(t.Year(), t.Month(), t.Day()-back, 0, 0, 0, 0, loc)
		if !w.on(day.Weekday()) {
			continue
		}
		s := day.Add(time.Duration(w.Start) * time.Minute)
		e := s.Add(w.Length)
		if !t.Before(s) && t.Before(e) {
			return s, e, true
		}
	}
	return time.Time{}, time.Time{}, false
}

// Next is the start of the first occurrence after t.
func (w Window) Next(t time.Time, loc *time.Location) time.Time {
	t = t.In(loc)
	for ahead := 0; ahead <= 8; ahead++ {
		day := time.Date(t.Year(), t.Month(), t.Day()+ahead, 0, 0, 0, 0, loc)
		if s := day.Add(time.Duration(w.Start) * time.Minute); w.on(day.Weekday()) && s.After(t) {
			return s
		}
	}
	return time.Time{}
}

func (w Window) on(d time.Weekday) bool {
	for _, x := range w.Days {
		if x == d {
			return true
		}
	}
	return false
}

// Cron is the CronJob schedule (read in the window's time zone) that fires
// every `every` (whole minutes that divide an hour, or whole hours that
// divide a day) from the start of each occurrence until its end. The
// schedule may also fire in the hour of the start before the start, or on
// a day after a window that runs past midnight: the job itself checks the
// window (Occurrence) and does nothing outside it.
func (w Window) Cron(every time.Duration) (string, error) {
	if every < time.Minute || every%time.Minute != 0 || (every < time.Hour && 60%int(every/time.Minute) != 0) || (every >= time.Hour && (every%time.Hour != 0 || 24%int(every/time.Hour) != 0)) {
		return "", fmt.Errorf("--every %s: use whole minutes that divide an hour (1m, 5m, 15m, 30m) or hours that divide a day (1h, 2h, 6h)", every)
	}
	startM := w.Start % 60
	var hours []string
	for m := w.Start / 60 * 60; m < w.Start+int(w.Length/time.Minute); m += 60 {
		hours = append(hours, strconv.Itoa(m/60%24))
	}
	days := map[time.Weekday]bool{}
	for _, d := range w.Days {
		days[d] = true
		if w.Start+int(w.Length/time.Minute) > 24*60 {
			days[(d+1)%7] = true // the part after midnight
		}
	}
	var dl []int
	for d := range days {
		dl = append(dl, int(d))
	}
	dow := dowField(dl)
	if every >= time.Hour {
		n := int(every / time.Hour)
		var hs []string
		for m := w.Start; m < w.Start+int(w.Length/time.Minute); m += n * 60 {
			hs = append(hs, strconv.Itoa(m/60%24))
		}
		return fmt.Sprintf("%d %s * * %s", startM, strings.Join(hs, ","), dow), nil
	}
	n := int(every / time.Minute)
	return fmt.Sprintf("%d-59/%d %s * * %s", startM%n, n, strings.Join(hours, ","), dow), nil
}

// RenewalLead is how long before each maintenance window cert-manager may
// renew the plugin's Certificates (their renewal windows): the Secret is
// renewed just before the window, and the window's jobs restart the pods
// onto it.
const RenewalLead = time.Hour

// RenewalCron is the cron (in the window's time zone) of the renewal
// windows: RenewalLead before each start, on the day that is then.
func (w Window) RenewalCron() string {
	start := w.Start - int(RenewalLead/time.Minute)
	shift := 0
	if start < 0 {
		start += 24 * 60
		shift = 6 // the day before
	}
	var ds []int
	for _, d := range w.Days {
		ds = append(ds, (int(d)+shift)%7)
	}
	return fmt.Sprintf("%d %d * * %s", start%60, start/60, dowField(ds))
}

// dowField is a cron day-of-week field of the days (0 Sunday): sorted and
// comma-separated, or * for all seven.
func dowField(days []int) string {
	sort.Ints(days)
	if len(days) == 7 {
		return "*"
	}
	s := make([]string, len(days))
	for i, d := range days {
		s[i] = strconv.Itoa(d)
	}
	return strings.Join(s, ",")
}

// Period is the longest time between two starts of the window (a day for
// daily, a week for one day a week).
func (w Window) Period() time.Duration {
	if len(w.Days) == 0 {
		return 7 * 24 * time.Hour
	}
	longest := 0
	for i, d := range w.Days {
		next := w.Days[(i+1)%len(w.Days)]
		gap := (int(next) - int(d) + 7) % 7
		if gap == 0 {
			gap = 7
		}
		longest = max(longest, gap)
	}
	return time.Duration(longest) * 24 * time.Hour
}
