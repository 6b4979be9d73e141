package schedule

import (
	"testing"
	"time"
)

func TestParseWindowAndOccurrence(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		x, err := time.ParseInLocation("2006-01-02 15:04", s, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	w, err := ParseWindow("Sat 02:00-04:00")
	if err != nil {
		t.Fatal(err)
	}
	// 2026-12-12 is a Saturday.
	for _, c := range []struct {
		when string
		open bool
		end  string
	}{
		{"2026-12-12 01:59", false, ""}, {"2026-12-12 02:00", true, "2026-12-12 04:00"}, {"2026-12-12 03:59", true, "2026-12-12 04:00"},
		{"2026-12-12 04:00", false, ""}, {"2026-12-13 02:30", false, ""},
	} {
		_, end, open := w.Occurrence(at(c.when), berlin)
		if open != c.open || (open && !end.Equal(at(c.end))) {
			t.Errorf("%s: open %v until %s, want %v until %s", c.when, open, end, c.open, c.end)
		}
	}
	if n := w.Next(at("2026-12-12 03:00"), berlin); !n.Equal(at("2026-12-19 02:00")) {
		t.Errorf("next after a Saturday 03:00: %s", n)
	}
	if cron, _ := w.Cron(15 * time.Minute); cron != "0-59/15 2,3 * * 6" {
		t.Errorf("cron: %q", cron)
	}
	// Past midnight: Friday 23:30 to Saturday 00:30, in the window on
	// Saturday 00:10 (an occurrence that began the day before).
	w, _ = ParseWindow("Fri 23:30-00:30")
	if _, end, open := w.Occurrence(at("2026-12-12 00:10"), berlin); !open || !end.Equal(at("2026-12-12 00:30")) {
		t.Errorf("past midnight: open %v until %s", open, end)
	}
	if cron, _ := w.Cron(10 * time.Minute); cron != "0-59/10 23,0 * * 5,6" {
		t.Errorf("cron past midnight: %q", cron)
	}
	w, _ = ParseWindow("Mon-Fri 01:05-01:35")
	if len(w.Days) != 5 || w.Length != 30*time.Minute {
		t.Errorf("Mon-Fri: %v %s", w.Days, w.Length)
	}
	if cron, _ := w.Cron(5 * time.Minute); cron != "0-59/5 1 * * 1,2,3,4,5" {
		t.Errorf("cron: %q", cron)
	}
	for _, bad := range []string{"Sat", "Sat 2-4", "Someday 02:00-04:00", "Sat 25:00-26:00", "Sat 02:00"} {
		if _, err := ParseWindow(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, err := w.Cron(7 * time.Minute); err == nil {
		t.Error("--every 7m (does not divide an hour) accepted")
	}
}

func TestRenewalCronAndPeriod(t *testing.T) {
	for _, c := range []struct {
		window, cron string
		period       time.Duration
	}{
		{"Sat 02:00-04:00", "0 1 * * 6", 7 * 24 * time.Hour},
		{"Sat 00:30-02:00", "30 23 * * 5", 7 * 24 * time.Hour},
		{"daily 23:00-01:00", "0 22 * * *", 24 * time.Hour},
		{"Mon,Thu 03:15-04:00", "15 2 * * 1,4", 4 * 24 * time.Hour},
	} {
		w, err := ParseWindow(c.window)
		if err != nil {
			t.Fatal(err)
		}
		if got := w.RenewalCron(); got != c.cron {
			t.Errorf("%s: renewal cron %q, want %q", c.window, got, c.cron)
		}
		if got := w.Period(); got != c.period {
			t.Errorf("%s: period %s, want %s", c.window, got, c.period)
		}
	}
}
