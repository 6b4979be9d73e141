package tls

import (
	"testing"
	"time"
)

// The server and the client Certificate each carry their own lifetime and
// renewal; 0 leaves cert-manager's default (no field).
func TestCertificateDurations(t *testing.T) {
	p := Params{Namespace: "demo", Name: "pgpool", ClientUser: "app", Duration: 2160 * time.Hour, RenewBefore: 360 * time.Hour, ClientDuration: 24 * time.Hour}
	s, c := ServerCertificate(p, "pgpool-server-cert"), ClientCertificate(p, "pgpool-client-cert")
	if s.Spec.Duration.Duration != 2160*time.Hour || s.Spec.RenewBefore.Duration != 360*time.Hour {
		t.Fatalf("server: %v %v", s.Spec.Duration, s.Spec.RenewBefore)
	}
	if c.Spec.Duration.Duration != 24*time.Hour || c.Spec.RenewBefore != nil {
		t.Fatalf("client: %v %v", c.Spec.Duration, c.Spec.RenewBefore)
	}
}
