package ui

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
)

// RenderStatus writes st, the status of t, as `tls status` shows it.
func RenderStatus(out io.Writer, t *pgpool.Target, st *status.Status) error {
	w := tabwriter.NewWriter(cleanWriter{out}, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Workload:\t%s (%d replicas, %s)\n", st.Workload, t.Replicas, t.UpdateStrategy)
	for _, m := range st.ManagedBy {
		fmt.Fprintf(w, "Managed by:\t%s\n", m)
	}
	if st.Reverted != "" {
		fmt.Fprintf(w, "REVERTED:\t%s\n", st.Reverted)
	}
	if st.Owner != "" {
		fmt.Fprintf(w, "Controlled by:\t%s\n", st.Owner)
	}
	if st.OwnerSays != "" {
		fmt.Fprintf(w, "  its spec says:\t%s\n", st.OwnerSays)
		for _, d := range st.OwnerDiffers {
			fmt.Fprintf(w, "  DIFFERS:\t%s\n", d)
		}
	}
	if st.OwnerPaused != "" {
		fmt.Fprintf(w, "  paused:\t%s\n", st.OwnerPaused)
	}
	for _, p := range st.OwnerPending {
		fmt.Fprintf(w, "  ops request not ended:\t%s\n", p)
	}
	if st.Layout == "bitnami" {
		fmt.Fprintf(w, "Config:\t%s (Bitnami's postgresql-ha)\n", st.Config)
	} else {
		fmt.Fprintf(w, "Config:\t%s (mounted at %s)\n", st.Config, t.Config.MountPath)
	}
	fmt.Fprintf(w, "TLS:\t%s\n", map[bool]string{true: "on", false: "off"}[st.SSL])
	fmt.Fprintf(w, "sslMode / clientAuthMode:\t%s / %s\n", st.SSLMode, st.AuthMode)
	if st.HBAEnforced {
		fmt.Fprintf(w, "pool_hba.conf:\tenforced (enable_pool_hba = on)\n")
	} else {
		fmt.Fprintf(w, "pool_hba.conf:\tNOT enforced (enable_pool_hba = off): pgpool admits clients without reading it, so sslMode require and cert are not enforced\n")
	}
	if st.Issuer.Name != "" {
		fmt.Fprintf(w, "Issuer:\t%s %s\n", st.Issuer.Kind, st.Issuer.Name)
	}
	fmt.Fprintf(w, "TLS volume at %s:\t%v\n", st.TLSMountPath, st.TLSVolume)
	for _, c := range st.Certificates {
		fmt.Fprintf(w, "Certificate %s:\tReady=%v revision %d\n", c.Name, c.Ready, c.Revision)
		if c.Secret != nil {
			fmt.Fprintf(w, "  subject / issuer:\t%s / %s\n", c.Secret.Subject, c.Secret.Issuer)
			fmt.Fprintf(w, "  serial / expires:\t%s / %s (in %s)\n", c.Secret.Serial, c.Secret.NotAfter.UTC().Format(time.RFC3339), time.Until(c.Secret.NotAfter).Round(time.Hour))
		}
	}
	for _, c := range st.ClientCerts {
		fmt.Fprintf(w, "Client certificate for user %s:\tSecret %s, Ready=%v, expires %s\n", c.User, c.Secret, c.Ready, c.NotAfter.UTC().Format(time.RFC3339))
		if c.Reissued != "" {
			fmt.Fprintf(w, "  re-issued:\t%s\n", c.Reissued)
		}
	}
	if b := st.CABundle; b != nil {
		fmt.Fprintf(w, "CA bundle (ssl_ca_cert):\tConfigMap %s\n", b.ConfigMap)
		for _, x := range b.Issuer {
			fmt.Fprintf(w, "  issuer's CA:\t%s\n", x)
		}
		for _, c := range b.CAs {
			if c.Origin == "next" {
				fmt.Fprintf(w, "  next CA (the issuer's, renewed):\t%s (since %s; %s: tls rotate goes on)\n", c.Subject, since(c.Since), c.Until)
			}
		}
		for _, x := range b.Previous {
			until := "until the next tls rotate, unless --keep-previous-ca"
			for _, c := range b.CAs {
				if c.Origin == "previous" && c.Subject == x {
					if c.Until != "" {
						until = "since " + since(c.Since) + "; may go " + c.Until
					}
					until += ", and at the latest when it expires, " + c.NotAfter.UTC().Format(time.RFC3339)
				}
			}
			fmt.Fprintf(w, "  previous issuer's CA:\t%s (kept for overlap %s)\n", x, until)
		}
		for _, c := range b.CAs {
			if c.Origin == "kept" {
				fmt.Fprintf(w, "  kept CA (--keep-ca):\t%s (sha256 %s, expires %s): it can sign client certificates pgpool accepts\n", c.Subject, c.SHA256, c.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		for _, x := range b.Backend {
			fmt.Fprintf(w, "  backend CA:\t%s\n", x)
		}
		for _, c := range st.UnknownCAs() {
			fmt.Fprintf(w, "  %s\t%s (sha256 %s, expires %s): %s; it can sign client certificates pgpool accepts; the next tls rotate drops it\n",
				"CA of unknown origin:", c.Subject, c.SHA256, c.NotAfter.UTC().Format(time.RFC3339), c.Why)
		}
	}
	for _, b := range st.Backends {
		what := b.Check
		switch b.Check {
		case "tls-trusted":
			what = "TLS, issued by " + b.Issuer + ", trusted by the CA bundle"
		case "tls-untrusted":
			what = "TLS, issued by " + b.Issuer + ", NOT trusted: pgpool cannot log in to it; add its CA with tls rotate --reissue=false --backend-ca"
		case "plain":
			what = "no TLS"
		}
		if b.Detail != "" && b.Check != "tls-untrusted" {
			what += " (" + b.Detail + ")"
		}
		fmt.Fprintf(w, "Backend %d:\t%s:%d: %s\n", b.Index, b.Host, b.Port, what)
	}
	for _, p := range st.Pods {
		fmt.Fprintf(w, "Pod %s:\tReady=%v\n", p.Name, p.Ready)
		if len(p.Endpoint) > 0 {
			var in, out []string
			for svc, ready := range p.Endpoint {
				if ready {
					in = append(in, svc)
				} else {
					out = append(out, svc)
				}
			}
			sort.Strings(in)
			sort.Strings(out)
			var parts []string
			if len(in) > 0 {
				parts = append(parts, "a ready endpoint of Service "+strings.Join(in, ", "))
			}
			if len(out) > 0 {
				parts = append(parts, "not a ready endpoint of Service "+strings.Join(out, ", ")+" (no traffic through it)")
			}
			line := strings.Join(parts, "; ")
			fmt.Fprintf(w, "  endpoint:\t%s\n", line)
		}
		if p.Check != "" {
			fmt.Fprintf(w, "  handshake:\t%s: %s\n", p.Check, p.Detail)
		}
		if p.Plaintext != "" {
			fmt.Fprintf(w, "  refusals:\tplaintext %s, certless %s\n", p.Plaintext, p.Certless)
			for _, d := range p.Refusal {
				fmt.Fprintf(w, "  \t%s\n", d)
			}
		}
	}
	if ca := st.IssuerCA; ca != nil {
		fmt.Fprintf(w, "Issuer's CA today:\t%s (sha256 %.16s, Secret %s, until %s)\n", ca.Subject, ca.SHA256, ca.Secret, ca.NotAfter.UTC().Format(time.RFC3339))
		if why := st.CARenewed(); why != "" {
			fmt.Fprintf(w, "  stale:\t%s\n", why)
		}
	}
	if sc := st.Schedule; sc != nil {
		fmt.Fprintf(w, "Schedule:\twindow %s (%s), every %s, CronJob %s\n", sc.Window, sc.TimeZone, sc.Every, sc.CronJob)
		if r := st.LastRun; r != nil {
			fmt.Fprintf(w, "Last scheduled run:\t%s %s: %s (next window %s)\n", r.Time.Format(time.RFC3339), r.Result, r.Message, r.NextRun.Format(time.RFC3339))
		} else {
			fmt.Fprintf(w, "Last scheduled run:\tnone yet\n")
		}
	}
	if st.LastOp != "" {
		fmt.Fprintf(w, "Last operation:\t%s\n", st.LastOp)
	}
	return w.Flush()
}

// StatusRow is one pgpool of a fleet's status table: its status, or why
// there is none.
type StatusRow struct {
	// Context is the kubeconfig context of the cluster ("" with one).
	Context         string
	Namespace, Name string
	Target          *pgpool.Target
	Status          *status.Status
	Error           string
}

// RenderStatusTable writes one line per pgpool: namespace, name, TLS,
// sslMode, auth mode, issuer, days until the server certificate expires
// (coloured when near on a terminal), the pods proven to serve it
// (verified), and the last operation.
func RenderStatusTable(out io.Writer, rows []StatusRow, verified bool) error {
	sty := NewStyles(out, os.Getenv("NO_COLOR") == "" && IsTerminal(out))
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	contexts := false
	for _, r := range rows {
		contexts = contexts || r.Context != ""
	}
	ctxCol := func(r StatusRow) string {
		if !contexts {
			return ""
		}
		return r.Context + "\t"
	}
	if contexts {
		fmt.Fprint(w, "CONTEXT\t")
	}
	fmt.Fprintln(w, "NAMESPACE\tNAME\tTLS\tSSLMODE\tAUTH\tISSUER\tEXPIRES\tCURRENT\tPLAINTEXT\tCERTLESS\tLAST OPERATION")
	for _, r := range rows {
		if r.Status == nil {
			fmt.Fprintf(w, "%s%s\t%s\t?\t\t\t\t\t\t\t\t%s\n", ctxCol(r), r.Namespace, r.Name, Clean(FirstLine(r.Error)))
			continue
		}
		st, t := r.Status, r.Target
		tlsOn, issuer, expires, current, plain, certless := "off", "", "", "", "", ""
		if st.SSL {
			tlsOn = "on"
		}
		if st.Issuer.Name != "" {
			issuer = st.Issuer.Kind + "/" + st.Issuer.Name
		}
		for _, c := range st.Certificates {
			if c.Name == pgpool.ServerCertName(t.Name) && c.Secret != nil {
				days := int(time.Until(c.Secret.NotAfter).Hours() / 24)
				expires = fmt.Sprintf("%dd", days)
				switch {
				case days < 7:
					expires = sty.Failure(expires)
				case days < 30:
					expires = sty.Warning(expires)
				}
			}
		}
		if verified {
			ok := 0
			for _, p := range st.Pods {
				if p.Check == "ok" {
					ok++
				}
			}
			current = fmt.Sprintf("%d/%d", ok, len(st.Pods))
			plain, certless = worst(st.Pods, func(p status.PodStatus) string { return p.Plaintext }), worst(st.Pods, func(p status.PodStatus) string { return p.Certless })
		}
		last := t.LastOperation()
		lastOp := ""
		if last.Operation != "" {
			lastOp = Clean(last.Operation + " " + last.Result + " " + last.Time)
		}
		fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ctxCol(r), r.Namespace, r.Name, tlsOn, st.SSLMode, st.AuthMode, issuer, expires, current, plain, certless, lastOp)
	}
	return w.Flush()
}

// worst is the weakest negative proof of the pods: accepted on any,
// else not-checked on any (or no pod), else refused.
func worst(pods []status.PodStatus, of func(status.PodStatus) string) string {
	w := "refused"
	for _, p := range pods {
		switch v := of(p); {
		case v == "accepted":
			return v
		case v != "refused":
			w = "not-checked"
		}
	}
	if len(pods) == 0 {
		return "not-checked"
	}
	return w
}

// FirstLine is s up to its first newline.
func FirstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// FleetRow is how one pgpool of a fleet fared.
type FleetRow struct {
	Namespace, Name string
	Succeeded       bool
	Seconds         float64
	Error           string
}

// RenderFleet writes a fleet's summary table: one line per pgpool, its
// result, time and the first line of its error.
func RenderFleet(out io.Writer, rows []FleetRow) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAMESPACE\tNAME\tRESULT\tTIME\tERROR")
	for _, r := range rows {
		res, msg := "succeeded", ""
		if !r.Succeeded {
			res, msg = "FAILED", FirstLine(r.Error)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Name, res, (time.Duration(r.Seconds * 1e9)).Round(100*time.Millisecond), msg)
	}
	return w.Flush()
}

// cleanWriter writes through Clean (text without colours only).
type cleanWriter struct{ w io.Writer }

func (c cleanWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(c.w, Clean(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// since is a record's time, or "?" when it has none.
func since(t *time.Time) string {
	if t == nil {
		return "?"
	}
	return t.UTC().Format(time.RFC3339)
}
