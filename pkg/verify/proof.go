package verify

import (
	"context"
	"errors"
	"fmt"
)

// Proof is what one handshake with a pod proved: the one judgement used by
// a roll, its end-state check and `tls status`.
type Proof struct {
	// Check is "ok" (it serves what the Secret holds, or answers without
	// TLS when TLS is off), "mismatch", "unreachable" (no connection to
	// it) or "error".
	Check string
	// Detail says it in a sentence.
	Detail string
	Served *Served
	Err    error
}

// Prove checks by a handshake what pod serves against want.
func Prove(ctx context.Context, dial Dialer, pod string, want Expect) Proof {
	s, err := Check(ctx, dial, pod, want)
	p := Proof{Served: s, Err: err}
	var de *DialError
	var me *MismatchError
	switch {
	case err == nil && s.TLS:
		ca := "verified against its ca.crt"
		if !s.Verified {
			ca = "not verified: the Secret has no ca.crt"
		}
		p.Check, p.Detail = "ok", fmt.Sprintf("serves serial %s over %s, the Secret's certificate, %s", s.Serial, s.Version, ca)
	case err == nil:
		p.Check, p.Detail = "ok", "answers the SSLRequest with 'N' (no TLS), as configured"
	case errors.As(err, &de):
		p.Check, p.Detail = "unreachable", err.Error()
	case errors.As(err, &me):
		p.Check, p.Detail = "mismatch", err.Error()
	default:
		p.Check, p.Detail = "error", err.Error()
	}
	return p
}
