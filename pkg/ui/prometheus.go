package ui

import (
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
)

// MetricsRow is one pgpool of `tls status -o prometheus`.
type MetricsRow struct {
	Namespace, Name string
	Status          *status.Status
	// Error says why there is no status.
	Error string
}

// PrintPrometheus writes rows in the Prometheus text exposition format
// (node_exporter's textfile collector reads it), through the client
// library's registry and encoder. Per pod: the served certificate's end
// (with its serial and issuer), whether it is the Secret's, the negative
// proof, and when it was last proven (now, for a pod proven in this run);
// per Certificate: the end of the one its Secret holds; per pgpool:
// whether its status could be read.
func PrintPrometheus(out io.Writer, rows []MetricsRow, now time.Time) error {
	reg := prometheus.NewPedanticRegistry()
	pod := []string{"namespace", "pgpool", "pod"}
	notAfter := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgpool_tls_served_not_after_seconds",
		Help: "End of the validity of the certificate the pod serves (unix time)."}, append(pod, "serial", "issuer"))
	matches := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgpool_tls_served_matches_secret",
		Help: "1 if the pod serves what it should (the Secret's certificate, or no TLS when TLS is off), 0 if not or not proven."}, pod)
	plaintext := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgpool_tls_plaintext_refused",
		Help: "1 if pgpool refused a login without TLS, 0 if it accepted one or it was not checked (proof says which)."}, append(pod, "proof"))
	certless := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgpool_tls_certless_refused",
		Help: "1 if pgpool refused a TLS login without a client certificate, 0 if it accepted one or it was not checked (proof says which)."}, append(pod, "proof"))
	proven := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgpool_tls_last_proof_timestamp_seconds",
		Help: "When the pod was last proven to serve what it should (unix time)."}, pod)
	certEnd := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgpool_tls_certificate_not_after_seconds",
		Help: "End of the validity of the certificate in a Certificate's Secret (unix time)."}, []string{"namespace", "pgpool", "certificate", "serial"})
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "pgpool_tls_status_up",
		Help: "1 if the pgpool's TLS status could be read, 0 if not."}, []string{"namespace", "pgpool"})
	for _, c := range []prometheus.Collector{notAfter, matches, plaintext, certless, proven, certEnd, up} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if r.Status == nil {
			up.WithLabelValues(r.Namespace, r.Name).Set(0)
			continue
		}
		up.WithLabelValues(r.Namespace, r.Name).Set(1)
		for _, p := range r.Status.Pods {
			l := []string{r.Namespace, r.Name, p.Name}
			if p.Check == "skipped" || p.Check == "" {
				continue // --verify=false: nothing was asked of the pod
			}
			ok := p.Check == "ok"
			matches.WithLabelValues(l...).Set(b2f(ok))
			if ok {
				proven.WithLabelValues(l...).Set(float64(now.Unix()))
			}
			if s := p.Served; s != nil && s.TLS && !s.NotAfter.IsZero() {
				notAfter.WithLabelValues(append(l, s.Serial, s.Issuer)...).Set(float64(s.NotAfter.Unix()))
			}
			if p.Plaintext != "" {
				plaintext.WithLabelValues(append(l, p.Plaintext)...).Set(b2f(p.Plaintext == "refused"))
			}
			if p.Certless != "" {
				certless.WithLabelValues(append(l, p.Certless)...).Set(b2f(p.Certless == "refused"))
			}
		}
		for _, c := range r.Status.Certificates {
			if c.Secret != nil && !c.Secret.NotAfter.IsZero() {
				certEnd.WithLabelValues(r.Namespace, r.Name, c.Name, c.Secret.Serial).Set(float64(c.Secret.NotAfter.Unix()))
			}
		}
	}
	families, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(out, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range families {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
