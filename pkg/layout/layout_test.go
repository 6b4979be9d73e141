package layout

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

func TestForPicksByWorkloadKind(t *testing.T) {
	for kind, want := range map[string]string{"StatefulSet": "kubedb", "PetSet": "kubedb", "Deployment": "pgpool2_on_k8s"} {
		l, err := For(&pgpool.Target{Kind: kind})
		if err != nil || l.Name() != want {
			t.Errorf("For(%s) = %v, %v; want %s", kind, l, err, want)
		}
	}
	if _, err := For(&pgpool.Target{Kind: "DaemonSet", Namespace: "demo", Name: "x"}); err == nil {
		t.Error("For(DaemonSet): no error")
	}
}

// Both layouts write the files under their keys, on the resourceVersion
// read; a Secret's data is base64.
func TestConfigPatch(t *testing.T) {
	for _, l := range []pgpool.Layout{KubeDB{}, Pgpool2OnK8s{}} {
		for kind, want := range map[string]string{"Secret": "c3NsID0gb24K", "ConfigMap": "ssl = on\n"} {
			var got struct {
				Metadata struct{ ResourceVersion string } `json:"metadata"`
				Data     map[string]string                `json:"data"`
			}
			b := l.ConfigPatch(pgpool.Config{Kind: kind, ResourceVersion: "42"}, "ssl = on\n", "")
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.Metadata.ResourceVersion != "42" || got.Data["pgpool.conf"] != want {
				t.Errorf("%s %s: %s", l.Name(), kind, b)
			}
			if _, ok := got.Data["pool_hba.conf"]; !ok {
				t.Errorf("%s %s: pool_hba.conf not written (an empty file is a file): %s", l.Name(), kind, b)
			}
		}
		if _, _, ok := l.ConfigFiles(map[string]string{"pool_hba.conf": "x"}); ok {
			t.Errorf("%s: data without pgpool.conf taken for the config", l.Name())
		}
		pc, hba, ok := l.ConfigFiles(map[string]string{"pgpool.conf": "a", "pool_hba.conf": "b"})
		if !ok || pc != "a" || hba != "b" {
			t.Errorf("%s: ConfigFiles = %q %q %v", l.Name(), pc, hba, ok)
		}
		if got := l.TLSMountPath("/config/"); got != "/config/tls" {
			t.Errorf("%s: TLSMountPath = %s", l.Name(), got)
		}
		if p := l.Paths(); p.Cert != pgpool.PgpoolTLSDir+"/tls.crt" || p.CA != pgpool.PgpoolTLSDir+"/ca.pem" {
			t.Errorf("%s: Paths = %+v", l.Name(), p)
		}
	}
	if !(KubeDB{}).StablePodNames() || (Pgpool2OnK8s{}).StablePodNames() {
		t.Error("StablePodNames: StatefulSet pods keep their names, Deployment pods do not")
	}
}

func status(kind string, gen, obs, want, updated, ready, total, avail int64, cur, upd string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"kind": kind, "metadata": map[string]any{"generation": gen},
		"spec": map[string]any{"replicas": want},
		"status": map[string]any{"observedGeneration": obs, "updatedReplicas": updated, "readyReplicas": ready,
			"replicas": total, "availableReplicas": avail, "currentRevision": cur, "updateRevision": upd},
	}}
	return u
}

func TestRolloutDone(t *testing.T) {
	for _, c := range []struct {
		name string
		l    pgpool.Layout
		u    *unstructured.Unstructured
		want bool
	}{
		{"not observed", KubeDB{}, status("StatefulSet", 2, 1, 3, 3, 3, 3, 3, "a", "a"), false},
		{"revisions differ", KubeDB{}, status("StatefulSet", 2, 2, 3, 3, 3, 3, 3, "a", "b"), false},
		{"statefulset done", KubeDB{}, status("StatefulSet", 2, 2, 3, 3, 3, 3, 0, "b", "b"), true},
		{"old pod left", Pgpool2OnK8s{}, status("Deployment", 2, 2, 3, 3, 3, 4, 3, "", ""), false},
		{"not available", Pgpool2OnK8s{}, status("Deployment", 2, 2, 3, 3, 3, 3, 2, "", ""), false},
		{"deployment done", Pgpool2OnK8s{}, status("Deployment", 2, 2, 3, 3, 3, 3, 3, "", ""), true},
	} {
		if got, msg := c.l.RolloutDone(c.u); got != c.want || msg == "" {
			t.Errorf("%s: RolloutDone = %v %q, want %v", c.name, got, msg, c.want)
		}
	}
}

func TestOwner(t *testing.T) {
	yes, no := true, false
	tg := &pgpool.Target{Owners: []metav1.OwnerReference{
		{APIVersion: "kubedb.com/v1alpha2", Kind: "Pgpool", Name: "pp", Controller: &no},
		{APIVersion: "example.com/v1", Kind: "Pgpool", Name: "other", Controller: &yes},
	}}
	if o := (KubeDB{}).Owner(tg); o != nil {
		t.Errorf("Owner = %+v: neither reference is a controlling kubedb.com Pgpool", o)
	}
	tg.Owners = append(tg.Owners, metav1.OwnerReference{APIVersion: "kubedb.com/v1", Kind: "Pgpool", Name: "pp", Controller: &yes})
	if o := (KubeDB{}).Owner(tg); o == nil || o.Name != "pp" {
		t.Errorf("Owner = %+v, want Pgpool pp", o)
	}
	if o := (Pgpool2OnK8s{}).Owner(tg); o != nil {
		t.Errorf("pgpool2_on_k8s Owner = %+v, want none", o)
	}
}
