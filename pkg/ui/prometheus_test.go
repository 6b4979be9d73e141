package ui

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/status"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
)

// Per pod: the served certificate's end with its serial and issuer, the
// match with the Secret, the negative proof with its result, and the time
// of the proof (a pod not proven has none); a pgpool whose status could not
// be read is up 0. Read back with Prometheus' own text parser.
func TestPrintPrometheus(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	end := now.Add(30 * 24 * time.Hour)
	st := &status.Status{Pods: []status.PodStatus{
		{Name: "pgpool-0", Check: "ok", Served: &verify.Served{TLS: true, Serial: "0a", Issuer: "CN=ca", NotAfter: end}, Plaintext: "refused", Certless: "accepted"},
		{Name: "pgpool-1", Check: "unreachable"},
	}}
	var out bytes.Buffer
	if err := PrintPrometheus(&out, []MetricsRow{{Namespace: "db", Name: "pgpool", Status: st}, {Namespace: "db", Name: "other", Error: "forbidden"}}, now); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		for _, m := range fams[name].GetMetric() {
			match := true
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				match = match && have[k] == v
			}
			if match {
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"pgpool_tls_served_not_after_seconds", map[string]string{"pod": "pgpool-0", "serial": "0a", "issuer": "CN=ca"}, float64(end.Unix())},
		{"pgpool_tls_served_matches_secret", map[string]string{"pod": "pgpool-0"}, 1},
		{"pgpool_tls_served_matches_secret", map[string]string{"pod": "pgpool-1"}, 0},
		{"pgpool_tls_plaintext_refused", map[string]string{"pod": "pgpool-0", "proof": "refused"}, 1},
		{"pgpool_tls_certless_refused", map[string]string{"pod": "pgpool-0", "proof": "accepted"}, 0},
		{"pgpool_tls_last_proof_timestamp_seconds", map[string]string{"pod": "pgpool-0"}, float64(now.Unix())},
		{"pgpool_tls_status_up", map[string]string{"pgpool": "pgpool"}, 1},
		{"pgpool_tls_status_up", map[string]string{"pgpool": "other"}, 0},
	} {
		if got, ok := value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v\n%s", c.name, c.labels, got, ok, c.want, out.String())
		}
	}
	if _, ok := value("pgpool_tls_last_proof_timestamp_seconds", map[string]string{"pod": "pgpool-1"}); ok {
		t.Error("an unproven pod has a proof time")
	}
}
