package opsrequest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/planner"
)

// The KubeDB tutorial's four manifests, as they are, map onto the plugin's
// operations with their fields.
func TestSeedOpsRequestsParse(t *testing.T) {
	dir := filepath.Join("..", "..", "test", "fixtures", "kubedb-ops")
	for _, tc := range []struct {
		file, op   string
		issuerOnly bool
	}{
		{"ppops-add-tls.yaml", planner.Add, false},
		{"ppops-rotate.yaml", planner.Rotate, false},
		{"ppops-change-issuer.yaml", planner.Add, true},
		{"ppops-remove.yaml", planner.Remove, false},
	} {
		data, err := os.ReadFile(filepath.Join(dir, tc.file))
		if err != nil {
			t.Fatal(err)
		}
		runs, err := Parse(tc.file, data, "default", false)
		if err != nil || len(runs) != 1 {
			t.Fatalf("%s: %v (%d runs)", tc.file, err, len(runs))
		}
		r := runs[0]
		if r.Intent.Operation != tc.op || r.Intent.IssuerOnly != tc.issuerOnly || r.Namespace != "demo" || r.Name != "pgpool" {
			t.Fatalf("%s: %+v", tc.file, r)
		}
		if tc.file == "ppops-add-tls.yaml" {
			q := r.Intent
			if q.SSLMode != "require" || q.AuthMode != "cert" || q.Issuer.Name != "pgpool-issuer" || strings.Join(q.ClientOrgs, ",") != "pgpool" ||
				strings.Join(q.ClientOUs, ",") != "client" || r.Timeout != 5*time.Minute || r.Apply != "IfReady" {
				t.Fatalf("add: %+v", r)
			}
		}
	}
}

const opsHead = "apiVersion: ops.kubedb.com/v1alpha1\nkind: PgpoolOpsRequest\nmetadata: {name: x, namespace: demo}\n"

// Each manifest KubeDB forbids, or the plugin cannot run as written, is an
// error naming the document and the field; none of the documents of the
// file runs (parsing comes before any client is built).
func TestBadOpsRequests(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{opsHead + "spec: {type: Upgrade, databaseRef: {name: pgpool}}", `spec.type "Upgrade": only ReconfigureTLS`},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {remove: true, frobnicate: 1}}", `unknown field "frobnicate"`},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {remove: true, rotateCertificates: true}}", "remove, rotateCertificates and issuerRef exclude each other"},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {rotateCertificates: true, sslMode: require}}", "take no certificates, sslMode or clientAuthMode"},
		{"apiVersion: ops.kubedb.com/v1alpha1\nkind: PostgresOpsRequest\nspec: {type: ReconfigureTLS}", `kind "PostgresOpsRequest": only ops.kubedb.com/v1alpha1 PgpoolOpsRequest`},
		{opsHead + "spec: {type: ReconfigureTLS, tls: {remove: true}}", "spec.databaseRef.name is required"},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}}", "spec.tls is required"},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: v, apiGroup: vault.example.com}}}", `apiGroup "vault.example.com"`},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca, kind: Vault}}}", `issuerRef.kind must be "Issuer" or "ClusterIssuer", not "Vault"`},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, certificates: [{alias: server, ipAddresses: [10.0.0.300]}]}}", `ipAddresses "10.0.0.300" is not an IP address`},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, certificates: [{alias: client, ipAddresses: [10.0.0.1]}]}}", "a client certificate has no dnsNames or ipAddresses"},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, certificates: [{alias: metrics}]}}", `alias "metrics": must be server or client`},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, certificates: [{alias: server, duration: 24h}, {alias: client, duration: 48h, renewBefore: 48h}]}}", "spec.tls.certificates[client].renewBefore (48h0m0s) must be shorter than duration (48h0m0s)"},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, certificates: [{alias: server, duration: -1h}]}}", "spec.tls.certificates[server].duration must be positive"},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, sslMode: prefer, clientAuthMode: cert}}", "client auth mode cert needs every client on TLS"},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {remove: true}, apply: Sometimes}", `spec.apply "Sometimes"`},
		{opsHead + "spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {remove: true}}\n---\n" + opsHead + "spec: {type: Restart, databaseRef: {name: pgpool}}", "(PgpoolOpsRequest x): spec.type \"Restart\""},
	} {
		_, err := Parse("f.yaml", []byte(tc.doc), "default", false)
		var invalid *InvalidError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &invalid) {
			t.Errorf("%s\n: error %v, want %q (an InvalidError: exit 2)", tc.doc, err, tc.want)
		}
	}
	// -n given and different from metadata.namespace.
	if _, err := Parse("f.yaml", []byte(opsHead+"spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {remove: true}}"), "prod", true); err == nil ||
		!strings.Contains(err.Error(), `metadata.namespace "demo" does not match the namespace "prod" given with -n`) {
		t.Errorf("namespace mismatch: %v", err)
	}
}

// Each certificate of a manifest keeps its own duration and renewBefore;
// one not given is cert-manager's default, not the other's.
func TestOpsRequestDurationsPerCertificate(t *testing.T) {
	runs, err := Parse("f.yaml", []byte(opsHead+"spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, certificates: [{alias: server, duration: 2160h, renewBefore: 360h}, {alias: client, duration: 24h}]}}"), "default", false)
	if err != nil || len(runs) != 1 {
		t.Fatalf("%+v, %v", runs, err)
	}
	q := runs[0].Intent
	if q.Duration != 2160*time.Hour || q.RenewBefore != 360*time.Hour || q.ClientDuration != 24*time.Hour || q.ClientRenewBefore != 0 {
		t.Fatalf("durations: server %s/%s, client %s/%s", q.Duration, q.RenewBefore, q.ClientDuration, q.ClientRenewBefore)
	}
}

// Server ipAddresses and dnsNames of a manifest become the server
// certificate's extra SANs.
func TestOpsRequestServerSANs(t *testing.T) {
	runs, err := Parse("f.yaml", []byte(opsHead+"spec: {type: ReconfigureTLS, databaseRef: {name: pgpool}, tls: {issuerRef: {name: ca}, certificates: [{alias: server, dnsNames: [pgpool.example.com], ipAddresses: [10.0.0.1, '::1']}]}}"), "default", false)
	if err != nil || len(runs) != 1 || strings.Join(runs[0].Intent.ExtraIPs, ",") != "10.0.0.1,::1" || strings.Join(runs[0].Intent.ExtraDNS, ",") != "pgpool.example.com" {
		t.Fatalf("%+v, %v", runs, err)
	}
}
