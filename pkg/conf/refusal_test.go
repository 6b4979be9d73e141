package conf

import (
	"reflect"
	"strings"
	"testing"
)

func TestRefusalAttempts(t *testing.T) {
	hba := "local all all trust\nhostssl appdb,other app,+admins 0.0.0.0/0 cert\nhost all @users 10.0.0.0/8 md5\nhost \"all\" \"all\" ::/0 md5\n"
	got := RefusalAttempts(hba, "rnd")
	want := []Attempt{{"postgres", "postgres"}, {"postgres", "rnd"}, {"appdb", "app"}, {"all", "all"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%v", got)
	}
}

func TestJudgeAttempt(t *testing.T) {
	m, _ := NewHBAModel("host all all 127.0.0.1/32 trust\nhost all all samenet md5\nhostssl all all 0.0.0.0/0 cert\n", true, true)
	if v := m.JudgeAttempt(Attempt{"postgres", "postgres"}, false); !v.Loopback || v.Line != 1 || !v.Admits() {
		t.Fatalf("%+v", v)
	}
	m, _ = NewHBAModel("hostssl all all 0.0.0.0/0 cert\n", true, true)
	if v := m.JudgeAttempt(Attempt{"postgres", "postgres"}, false); v.Admits() || v.Method != "implicit reject" {
		t.Fatalf("%+v", v)
	}
	// The attempt has no client certificate: a cert rule refuses it, and
	// pgpool letting it in means it does not enforce this file.
	if v := m.JudgeAttempt(Attempt{"postgres", "postgres"}, true); v.Loopback || v.Admits() || v.Line != 1 || !strings.Contains(v.Explain(true), "asks it for a client certificate") {
		t.Fatalf("%+v", v)
	}
	m.Enforced = false
	if v := m.JudgeAttempt(Attempt{"postgres", "postgres"}, false); !v.Admits() || v.Method != "" {
		t.Fatalf("%+v", v)
	}
}

// An @file list before the deciding rule may hold the attempt's user:
// pgpool reads that file, the plugin does not, so its answer is not known
// (not a proof that pgpool ignores pool_hba.conf).
func TestJudgeAttemptFileList(t *testing.T) {
	m, _ := NewHBAModel("host all @admins 0.0.0.0/0 trust\nhostssl all all 0.0.0.0/0 cert\n", true, true)
	v := m.JudgeAttempt(Attempt{"postgres", "postgres"}, false)
	if v.FileList != 1 || !strings.Contains(v.Explain(true), "@file list") {
		t.Fatalf("%+v: %s", v, v.Explain(true))
	}
	m, _ = NewHBAModel("hostssl all all 0.0.0.0/0 cert\nhost all @admins 0.0.0.0/0 trust\n", true, true)
	if v := m.JudgeAttempt(Attempt{"postgres", "postgres"}, true); v.FileList != 0 {
		t.Fatalf("an @file rule after the deciding one: %+v", v)
	}
}
