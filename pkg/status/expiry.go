package status

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Expiry is one certificate whose end a monitor cares about: what a pod
// serves, or what a Certificate's Secret holds.
type Expiry struct {
	// What names it: "pod NAME serves" or "Certificate NAME".
	What     string
	NotAfter time.Time
}

// Expiries are the served certificates of the pods (those that completed a
// handshake) and the certificates in the Secrets of the Certificates, the
// first to end first.
func (s *Status) Expiries() []Expiry {
	var out []Expiry
	for _, p := range s.Pods {
		if p.Served != nil && p.Served.TLS && !p.Served.NotAfter.IsZero() {
			out = append(out, Expiry{What: "the certificate pod " + p.Name + " serves", NotAfter: p.Served.NotAfter})
		}
	}
	for _, c := range s.Certificates {
		if c.Secret != nil && !c.Secret.NotAfter.IsZero() {
			out = append(out, Expiry{What: "the certificate of Certificate " + c.Name, NotAfter: c.Secret.NotAfter})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].NotAfter.Before(out[j].NotAfter) })
	return out
}

// Thresholds are `--warn-within` and `--fail-within` (0: not set).
type Thresholds struct {
	Warn, Fail time.Duration
	// NoCountdown leaves the time left out of Judge's messages, so that
	// a message stays the same as time passes (tls status --watch prints
	// a verdict again only when it changes).
	NoCountdown bool
}

// Set reports whether either threshold is set.
func (th Thresholds) Set() bool { return th.Warn > 0 || th.Fail > 0 }

// Judge says which of es end within the thresholds from now: the first
// that ends within Fail (a failure), else the first within Warn (a
// warning); "" each when none does.
func (th Thresholds) Judge(es []Expiry, now time.Time) (fail, warn string) {
	for _, e := range es {
		left := e.NotAfter.Sub(now)
		say := func(d time.Duration, flag string) string {
			if left <= 0 {
				return fmt.Sprintf("%s expired on %s", e.What, e.NotAfter.UTC().Format(time.RFC3339))
			}
			if th.NoCountdown {
				return fmt.Sprintf("%s expires on %s (%s %s)", e.What, e.NotAfter.UTC().Format(time.RFC3339), flag, Days(d))
			}
			return fmt.Sprintf("%s expires on %s, in %s (%s %s)", e.What, e.NotAfter.UTC().Format(time.RFC3339), Days(left), flag, Days(d))
		}
		switch {
		case fail == "" && th.Fail > 0 && left <= th.Fail:
			fail = say(th.Fail, "--fail-within")
		case warn == "" && th.Warn > 0 && left <= th.Warn:
			warn = say(th.Warn, "--warn-within")
		}
	}
	return fail, warn
}

// Days writes d in days and hours ("29d 23h"), or hours and minutes under a
// day.
func Days(d time.Duration) string {
	if d >= 24*time.Hour {
		days, hours := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
		if hours == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd %dh", days, hours)
	}
	return d.Round(time.Minute).String()
}

// ParseWithin reads a threshold: a whole number of days ("30d") or a Go
// duration ("72h", "90m").
func ParseWithin(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		d, err := strconv.Atoi(n)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%q: want a whole number of days (30d) or a duration (72h)", s)
		}
		return time.Duration(d) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q: want a whole number of days (30d) or a duration (72h)", s)
	}
	return d, nil
}
