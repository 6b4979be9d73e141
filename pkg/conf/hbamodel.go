package conf

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Probe is one connection attempt as pool_hba.conf sees it: over the local
// socket, or over TCP from an address (with the facts samehost, samenet
// and a host name match need), with or without TLS, to a database as a user.
type Probe struct {
	Local    bool
	TLS      bool
	Addr     netip.Addr
	Host     string // the name the address resolves to, when a rule names one
	SameHost bool   // Addr is one of the pod's own addresses
	SameNet  bool   // Addr is on one of the pod's networks
	DB, User string
}

func (p Probe) String() string {
	from := "the local socket"
	if !p.Local {
		from = p.Addr.String()
		if p.Host != "" {
			from += " (" + p.Host + ")"
		}
		if p.TLS {
			from += " with TLS"
		} else {
			from += " without TLS"
		}
	}
	return fmt.Sprintf("user %s to database %s from %s", p.User, p.DB, from)
}

// Access levels of a method: what a client must show to get in.
const (
	levelOpen   = 1 // trust, or pool_hba.conf not read at all
	levelAuth   = 2 // a password, a certificate, PAM or LDAP
	levelReject = 3 // reject, or no rule (implicit reject)
)

func methodLevel(m string) int {
	switch m {
	case "trust", "":
		return levelOpen
	case "reject", "implicit reject":
		return levelReject
	}
	return levelAuth
}

// HBAModel is pgpool's pool_hba.conf decision for a file: first match wins;
// a plain connection skips hostssl rules, a TLS one skips hostnossl; with
// ssl off no connection has TLS and hostssl rules never match; with
// enable_pool_hba off the file is not read and every client gets in as far
// as pgpool is concerned.
type HBAModel struct {
	Rules    []HBARule
	Enforced bool
	SSL      bool
}

// NewHBAModel parses text into a model.
func NewHBAModel(text string, enforced, ssl bool) (HBAModel, error) {
	rules, err := ParseHBA(text)
	return HBAModel{Rules: rules, Enforced: enforced, SSL: ssl}, err
}

// Decide returns the method pgpool applies to p and the rule's line (0 for
// none): "" when pool_hba.conf is not read, "implicit reject" when no rule
// matches.
func (m HBAModel) Decide(p Probe) (method string, line int) {
	if !m.Enforced {
		return "", 0
	}
	if !m.SSL {
		p.TLS = false
	}
	for _, r := range m.Rules {
		if r.matches(p) {
			return r.Method, r.Line
		}
	}
	return "implicit reject", 0
}

// matches is pgpool's check_hba for one rule.
func (r HBARule) matches(p Probe) bool {
	if (r.Type == "local") != p.Local {
		return false
	}
	if !p.Local {
		if (r.Type == "hostssl" && !p.TLS) || (r.Type == "hostnossl" && p.TLS) {
			return false
		}
		switch {
		case r.addr.keyword == "all":
		case r.addr.keyword == "samehost":
			if !p.SameHost {
				return false
			}
		case r.addr.keyword == "samenet":
			if !p.SameNet {
				return false
			}
		case r.addr.hostname != "":
			if p.Host != r.addr.hostname {
				return false
			}
		default:
			if !r.addr.prefix.Contains(p.Addr) {
				return false
			}
		}
	}
	return matchDB(r.dbs, p.DB, p.User) && matchUser(r.users, p.User)
}

// withFilesAsAll is r with each @file token of its database and user lists
// read as all (the names in the file are not known here), and whether it
// has one.
func (r HBARule) withFilesAsAll() (HBARule, bool) {
	has := false
	swap := func(ts []hbaToken) []hbaToken {
		out := make([]hbaToken, len(ts))
		for i, t := range ts {
			if !t.quoted && strings.HasPrefix(t.s, "@") {
				t, has = hbaToken{s: "all"}, true
			}
			out[i] = t
		}
		return out
	}
	r.dbs, r.users = swap(r.dbs), swap(r.users)
	return r, has
}

// matchDB is pgpool's check_db: samegroup and samerole end the list
// unmatched (pgpool does not support them).
func matchDB(tokens []hbaToken, db, user string) bool {
	for _, t := range tokens {
		switch {
		case t.keyword("all"):
			return true
		case t.keyword("sameuser"):
			if db == user {
				return true
			}
		case t.keyword("samegroup"), t.keyword("samerole"):
			return false
		case t.s == db:
			return true
		}
	}
	return false
}

// matchUser is pgpool's check_user: a +group ends the list unmatched.
func matchUser(tokens []hbaToken, user string) bool {
	for _, t := range tokens {
		switch {
		case !t.quoted && strings.HasPrefix(t.s, "+"):
			return false
		case t.s == user || t.keyword("all"):
			return true
		}
	}
	return false
}

// podAddr and podNeighbour stand for the pod's own address and another
// address on its network; they are never contacted.
var (
	podAddr      = netip.MustParseAddr("10.244.0.9")
	podNeighbour = netip.MustParseAddr("10.244.1.3")
)

// Probes derives the connection attempts that tell two versions of a file
// apart: every database, user and host name the rules name (and one they
// do not), the first and last address of every network they name and a set
// of fixed addresses (loopback, the pod, its network, elsewhere), over the
// local socket and TCP, with and without TLS.
func Probes(models ...HBAModel) []Probe {
	dbs, users, hosts := []string{"zz_other_db"}, []string{"zz_other_user"}, []string{}
	addrs := []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.5.5.5"), netip.MustParseAddr("::1"),
		podAddr, podNeighbour, netip.MustParseAddr("192.168.7.7"), netip.MustParseAddr("172.20.0.4"),
		netip.MustParseAddr("203.0.113.9"), netip.MustParseAddr("2001:db8::5"), netip.MustParseAddr("fd00::7"),
	}
	add := func(list []string, s string) []string {
		if s == "" || slices.Contains(list, s) {
			return list
		}
		return append(list, s)
	}
	for _, m := range models {
		for _, r := range m.Rules {
			for _, t := range r.dbs {
				if !t.keyword("all") && !t.keyword("sameuser") {
					dbs = add(dbs, t.s)
				}
			}
			for _, t := range r.users {
				if !t.keyword("all") {
					users = add(users, t.s)
				}
			}
			if r.addr.hostname != "" {
				hosts = add(hosts, r.addr.hostname)
			}
			if p := r.addr.prefix; p.IsValid() {
				first := p.Masked().Addr()
				addrs = append(addrs, first, lastAddr(p))
			}
		}
	}
	var out []Probe
	for _, u := range users {
		udbs := add(slices.Clone(dbs), u) // sameuser
		for _, d := range udbs {
			out = append(out, Probe{Local: true, DB: d, User: u})
			for _, tlsOn := range []bool{false, true} {
				for _, a := range addrs {
					p := Probe{TLS: tlsOn, Addr: a, DB: d, User: u}
					p.SameHost = a.IsLoopback() || a == podAddr
					p.SameNet = p.SameHost || a == podNeighbour
					out = append(out, p)
				}
				for _, h := range hosts {
					a := netip.MustParseAddr("198.51.100.7")
					if h == "localhost" {
						a = netip.MustParseAddr("127.0.0.1")
					}
					out = append(out, Probe{TLS: tlsOn, Addr: a, Host: h, DB: d, User: u, SameHost: a.IsLoopback(), SameNet: a.IsLoopback()})
				}
			}
		}
	}
	return out
}

// lastAddr is the last address of a network.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Widening is a connection attempt an edit lets in with a weaker method
// than before.
type Widening struct {
	Probe                 Probe
	Before, After         string
	BeforeLine, AfterLine int
}

func (w Widening) String() string {
	name := func(m string, line int) string {
		switch {
		case m == "":
			return "no check (pool_hba.conf not read)"
		case line == 0:
			return m
		}
		return fmt.Sprintf("%s (line %d)", m, line)
	}
	return fmt.Sprintf("%s: %s before, %s after", w.Probe, name(w.Before, w.BeforeLine), name(w.After, w.AfterLine))
}

// Widened returns every probe that after lets in with a weaker method than
// before (reject stays reject; a password or certificate never becomes
// trust).
func Widened(before, after HBAModel) []Widening { return WidenedFrom(after, before) }

// WidenedFrom returns every probe that after lets in with a weaker method
// than every one of floors does: a probe is widened when no floor model is
// as weak as after for it. The first floor's decision is reported.
func WidenedFrom(after HBAModel, floors ...HBAModel) []Widening {
	var out []Widening
	for _, p := range Probes(append([]HBAModel{after}, floors...)...) {
		ma, la := after.Decide(p)
		widened := true
		for _, f := range floors {
			if m, _ := f.Decide(p); methodLevel(ma) >= methodLevel(m) {
				widened = false
				break
			}
		}
		if widened {
			mb, lb := floors[0].Decide(p)
			out = append(out, Widening{p, mb, ma, lb, la})
		}
	}
	return out
}
