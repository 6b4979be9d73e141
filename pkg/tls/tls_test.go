package tls

import (
	"strings"
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

// What cert-manager's webhook refuses is refused here first, naming the
// Certificate, the field and where its value came from.
func TestValidate(t *testing.T) {
	p := Params{Namespace: "demo", Name: "pgpool", ClientUser: strings.Repeat("u", 65), Duration: 30 * time.Minute, RenewBefore: time.Minute}
	err := Validate(ClientCertificate(p, "pgpool-client-cert"), "--client-user")
	if err == nil || !strings.Contains(err.Error(), "Certificate demo/pgpool-client-cert would be refused by cert-manager: spec.commonName (--client-user) is 65 characters long, at most 64") {
		t.Fatalf("client: %v", err)
	}
	err = Validate(ServerCertificate(p, "pgpool-server-cert"), "the pgpool's name")
	for _, want := range []string{"spec.duration 30m0s is shorter than the minimum 1h0m0s", "spec.renewBefore 1m0s is shorter than the minimum 5m0s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("server: %v, want %q", err, want)
		}
	}
	p = Params{Namespace: "demo", Name: "pgpool", ClientUser: "app", Duration: 2 * time.Hour, RenewBefore: 2 * time.Hour}
	if err := Validate(ServerCertificate(p, "s"), ""); err == nil || !strings.Contains(err.Error(), "spec.renewBefore 2h0m0s is not shorter than the duration 2h0m0s") {
		t.Fatalf("renewBefore: %v", err)
	}
	p.RenewBefore = time.Hour
	if err := Validate(ServerCertificate(p, "s"), ""); err != nil {
		t.Fatal(err)
	}
}
