package status

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Facts are what `tls status --watch` compares from one probe to the next:
// one line of text per thing that can change (TLS settings, each
// Certificate, each pod's served certificate and negative proof, the CA
// bundle, each client certificate and backend, the last operation), keyed
// by what it is about.
func (s *Status) Facts() map[string]string {
	f := map[string]string{}
	tlsLine := "off"
	if s.SSL {
		tlsLine = fmt.Sprintf("on, sslMode %s, clientAuthMode %s", s.SSLMode, s.AuthMode)
		if !s.HBAEnforced {
			tlsLine += ", pool_hba.conf not enforced"
		}
	}
	f["tls"] = tlsLine
	if s.Issuer.Name != "" {
		f["issuer"] = s.Issuer.Kind + "/" + s.Issuer.Name
	}
	for _, c := range s.Certificates {
		v := fmt.Sprintf("revision %d, ready %v", c.Revision, c.Ready)
		if c.Secret != nil {
			v += fmt.Sprintf(", Secret holds serial %s until %s", c.Secret.Serial, day(c.Secret.NotAfter))
		}
		f["Certificate "+c.Name] = v
	}
	for _, p := range s.Pods {
		v := p.Check
		if v == "" {
			v = "not checked"
		}
		if p.Served != nil && p.Served.TLS {
			v += fmt.Sprintf(", serves serial %s until %s", p.Served.Serial, day(p.Served.NotAfter))
		} else if p.Detail != "" && p.Check != "ok" {
			v += ": " + p.Detail
		}
		if p.Plaintext != "" || p.Certless != "" {
			v += fmt.Sprintf(", plaintext %s, certless %s", orDash(p.Plaintext), orDash(p.Certless))
		}
		if !p.Ready {
			v += ", not Ready"
		}
		f["pod "+p.Name] = v
	}
	if s.CABundle != nil {
		var cas []string
		for _, c := range s.CABundle.CAs {
			cas = append(cas, fmt.Sprintf("%s (%s, sha256 %s)", c.Subject, c.Origin, short(c.SHA256)))
		}
		f["CA bundle"] = strings.Join(cas, "; ")
	}
	for _, c := range s.ClientCerts {
		f["client certificate "+c.User] = fmt.Sprintf("ready %v until %s", c.Ready, day(c.NotAfter))
	}
	for _, b := range s.Backends {
		f[fmt.Sprintf("backend %s:%d", b.Host, b.Port)] = b.Check
	}
	if s.LastOp != "" {
		f["last operation"] = s.LastOp
	}
	if ca := s.IssuerCA; ca != nil {
		v := fmt.Sprintf("%s (sha256 %s)", ca.Subject, short(ca.SHA256))
		if why := s.CARenewed(); why != "" {
			v += ": " + why
		}
		f["issuer's CA"] = v
	}
	if s.Schedule != nil {
		f["schedule"] = fmt.Sprintf("window %s (%s), every %s", s.Schedule.Window, s.Schedule.TimeZone, s.Schedule.Every)
	}
	if r := s.LastRun; r != nil {
		f["last scheduled run"] = fmt.Sprintf("%s %s: %s", r.Time.Format(time.RFC3339), r.Result, r.Message)
	}
	return f
}

// Changes are the lines that take prev to cur, sorted by key: "KEY: VALUE"
// for a new or changed fact (with "(was OLD)" for a change), "KEY: gone"
// for one that went. With a nil prev (the first probe) every fact is new.
func Changes(prev, cur map[string]string) []string {
	var out []string
	for k, v := range cur {
		old, had := prev[k]
		switch {
		case !had:
			out = append(out, k+": "+v)
		case old != v:
			out = append(out, fmt.Sprintf("%s: %s (was %s)", k, v, old))
		}
	}
	for k := range prev {
		if _, ok := cur[k]; !ok {
			out = append(out, k+": gone")
		}
	}
	sort.Strings(out)
	return out
}

func day(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}
