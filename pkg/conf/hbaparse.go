package conf

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// hbaToken is one value of a pool_hba.conf field; quoted tokens never count
// as keywords (all, sameuser, samehost...), as in pgpool.
type hbaToken struct {
	s      string
	quoted bool
}

// keyword reports whether t is the unquoted keyword k.
func (t hbaToken) keyword(k string) bool { return !t.quoted && t.s == k }

// hbaField is one field of a rule: a comma list of tokens ("a, b" is one
// field: a comma followed by blanks continues the list) and its byte span.
type hbaField struct {
	tokens     []hbaToken
	start, end int
}

// hbaFields splits a line as pgpool's next_field_expand does: blanks
// separate fields, commas separate a field's tokens, double quotes keep
// blanks, commas and '#' (a doubled quote is a literal quote inside), an
// unquoted '#' starts a comment. There are no line continuations.
func hbaFields(line string) (fields []hbaField, comment string) {
	i := 0
	blank := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }
	for i < len(line) {
		// next_token skips blanks and commas before a token.
		for i < len(line) && (blank(line[i]) || line[i] == ',') {
			i++
		}
		if i >= len(line) {
			break
		}
		if line[i] == '#' {
			return fields, strings.TrimRight(line[i:], "\r")
		}
		f := hbaField{start: i}
		for {
			var sb strings.Builder
			inQuote, wasQuote, sawQuote, initialQuote, comma := false, false, false, false, false
			for i < len(line) && (!blank(line[i]) || inQuote) {
				c := line[i]
				if c == '#' && !inQuote {
					break
				}
				if c == ',' && !inQuote {
					comma = true
					i++
					break
				}
				if c != '"' || wasQuote {
					sb.WriteByte(c)
				}
				if inQuote && c == '"' {
					wasQuote = !wasQuote
				} else {
					wasQuote = false
				}
				if c == '"' {
					inQuote = !inQuote
					sawQuote = true
					if sb.Len() == 0 {
						initialQuote = true
					}
				}
				i++
			}
			if sawQuote || sb.Len() > 0 {
				f.tokens = append(f.tokens, hbaToken{s: sb.String(), quoted: initialQuote})
			}
			f.end = i
			if !comma {
				break
			}
			// A trailing comma: the next token (after blanks) continues
			// this field.
			for i < len(line) && (blank(line[i]) || line[i] == ',') {
				i++
			}
			if i >= len(line) || line[i] == '#' {
				break
			}
		}
		if len(f.tokens) > 0 {
			fields = append(fields, f)
		} else if i < len(line) && line[i] == '#' {
			return fields, strings.TrimRight(line[i:], "\r")
		}
		if i < len(line) && line[i] == '#' {
			return fields, strings.TrimRight(line[i:], "\r")
		}
	}
	return fields, ""
}

// hbaAddr is a rule's address field, resolved as pgpool resolves it.
type hbaAddr struct {
	keyword  string       // all, samehost, samenet
	prefix   netip.Prefix // a numeric address with its mask
	hostname string       // anything that is not numeric
}

// parseInetAton reads an IPv4 address the way getaddrinfo with
// AI_NUMERICHOST does on glibc (inet_aton): 1 to 4 parts, each decimal,
// octal (leading 0) or hex (0x); the last part fills the remaining bytes
// ("0" is 0.0.0.0, "127.1" is 127.0.0.1).
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		lp := strings.ToLower(p)
		if strings.Contains(p, "_") || strings.HasPrefix(lp, "0b") || strings.HasPrefix(lp, "0o") {
			return netip.Addr{}, false
		}
		v, err := strconv.ParseUint(p, 0, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var ip uint32
	n := len(vals)
	for i := 0; i < n-1; i++ {
		if vals[i] > 255 {
			return netip.Addr{}, false
		}
		ip |= uint32(vals[i]) << (24 - 8*i)
	}
	lastBits := 32 - 8*(n-1)
	if lastBits < 32 && vals[n-1] >= 1<<lastBits {
		return netip.Addr{}, false
	}
	ip |= uint32(vals[n-1])
	return netip.AddrFrom4([4]byte{byte(ip >> 24), byte(ip >> 16), byte(ip >> 8), byte(ip)}), true
}

// numericAddr resolves a numeric IPv4 or IPv6 address.
func numericAddr(s string) (netip.Addr, bool) {
	if strings.Contains(s, ":") {
		a, err := netip.ParseAddr(s)
		return a.Unmap(), err == nil
	}
	return parseInetAton(s)
}

// maskBits turns a netmask address into a prefix length.
func maskBits(m netip.Addr) (int, bool) {
	b := m.AsSlice()
	ones, done := 0, false
	for _, x := range b {
		for bit := 7; bit >= 0; bit-- {
			if x&(1<<bit) != 0 {
				if done {
					return 0, false
				}
				ones++
			} else {
				done = true
			}
		}
	}
	return ones, true
}

// parseAddress reads the address field (and the netmask field when the
// address is numeric without /prefix); used reports how many fields it took.
func parseAddress(fields []hbaField) (a hbaAddr, used int, err error) {
	if len(fields) == 0 {
		return a, 0, fmt.Errorf("end of line before the address")
	}
	if len(fields[0].tokens) > 1 {
		return a, 0, fmt.Errorf("multiple values for the address")
	}
	t := fields[0].tokens[0]
	for _, k := range []string{"all", "samehost", "samenet"} {
		if t.keyword(k) {
			return hbaAddr{keyword: k}, 1, nil
		}
	}
	host, bits, hasSlash := t.s, "", false
	if at := strings.IndexByte(host, '/'); at >= 0 {
		host, bits, hasSlash = host[:at], host[at+1:], true
	}
	ip, numeric := numericAddr(host)
	if !numeric {
		if hasSlash {
			return a, 0, fmt.Errorf("host name %q with a CIDR mask", t.s)
		}
		if host == "" || strings.ContainsAny(host, " \t") {
			return a, 0, fmt.Errorf("invalid address %q", t.s)
		}
		return hbaAddr{hostname: host}, 1, nil
	}
	if hasSlash {
		n, err := strconv.Atoi(bits)
		if err != nil || n < 0 || n > ip.BitLen() {
			return a, 0, fmt.Errorf("invalid CIDR mask in address %q", t.s)
		}
		return hbaAddr{prefix: netip.PrefixFrom(ip, n).Masked()}, 1, nil
	}
	if len(fields) < 2 {
		return a, 0, fmt.Errorf("address %s has no /prefix and no netmask follows", t.s)
	}
	if len(fields[1].tokens) > 1 {
		return a, 0, fmt.Errorf("multiple values for the netmask")
	}
	m, ok := numericAddr(fields[1].tokens[0].s)
	if !ok {
		return a, 0, fmt.Errorf("address %s has no /prefix and %q is not a netmask", t.s, fields[1].tokens[0].s)
	}
	if m.Is4() != ip.Is4() {
		return a, 0, fmt.Errorf("address %s and netmask %s are not of the same family", t.s, fields[1].tokens[0].s)
	}
	n, ok := maskBits(m)
	if !ok {
		return a, 0, fmt.Errorf("%q is not a contiguous netmask", fields[1].tokens[0].s)
	}
	return hbaAddr{prefix: netip.PrefixFrom(ip, n).Masked()}, 2, nil
}
