package pgpool

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func target(pgpoolConf string) *Target {
	t := &Target{Name: "pgpool", Namespace: "demo", TLSMountPath: "/config/tls",
		Config: Config{PgpoolConf: pgpoolConf, PoolHBA: "host all all 0.0.0.0/0 md5\n"}}
	t.Template.Spec.Containers = []corev1.Container{{Name: "pgpool"}}
	return t
}

// Today's state is read as pgpool reads pgpool.conf: an upper-case key is
// ignored, a boolean prefix counts.
func TestReadStateAsPgpoolReadsIt(t *testing.T) {
	for conf, want := range map[string]TLSState{
		"ssl = on\nenable_pool_hba = t\n":  {Enabled: true, HBAEnforced: true},
		"SSL = on\nENABLE_POOL_HBA = on\n": {},
		"ssl = of\nenable_pool_hba = ye\n": {HBAEnforced: true},
		"ssl = on\nssl = off # the last\n": {},
	} {
		tg := target(conf)
		tg.ReadState()
		if tg.State.Enabled != want.Enabled || tg.State.HBAEnforced != want.HBAEnforced {
			t.Errorf("%q: enabled %v enforced %v, want %v %v", conf, tg.State.Enabled, tg.State.HBAEnforced, want.Enabled, want.HBAEnforced)
		}
	}
}

// A backup survives its Secret: the files before, the files the
// operation writes, and the state.
func TestBackupRoundTrip(t *testing.T) {
	tg := target("ssl = off\n")
	b := TakeBackup(tg, "add", "2026-12-03T10:00:00Z")
	b.WrotePgpoolConf, b.WrotePoolHBA, b.Wrote = "ssl = on\n", "hostssl all all 0.0.0.0/0 md5\n", true
	sec, err := b.Secret("demo", "pgpool")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadBackup(sec, "pgpool")
	if err != nil {
		t.Fatal(err)
	}
	if got.PgpoolConf != "ssl = off\n" || got.WrotePgpoolConf != "ssl = on\n" || got.WrotePoolHBA != b.WrotePoolHBA || !got.Wrote || got.Operation != "add" || got.Done {
		t.Fatalf("round trip: %+v", got)
	}
	sec.Labels = nil
	if _, err := ReadBackup(sec, "pgpool"); err == nil {
		t.Fatal("a backup Secret without our labels was read")
	}
}

// Released pgpool (up to 4.7) loads certificates only at start; the
// development branch 4.8 reloads them; a version that does not parse says so.
func TestReloadsCertificates(t *testing.T) {
	for v, want := range map[string][2]bool{
		"4.3.5 (tamahomeboshi)": {false, true}, "4.6.1 (sumiyomihime)": {false, true}, "4.7.0": {false, true},
		"4.8devel (master)": {true, true}, "5.0.0": {true, true}, "": {false, false}, "pgpool": {false, false},
	} {
		if r, ok := ReloadsCertificates(v); r != want[0] || ok != want[1] {
			t.Errorf("ReloadsCertificates(%q) = %v, %v; want %v, %v", v, r, ok, want[0], want[1])
		}
	}
}
