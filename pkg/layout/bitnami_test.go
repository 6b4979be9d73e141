package layout

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// chartPod is the pgpool pod template of the postgresql-ha chart with
// pgpool.tls.enabled=false (the values' default).
func chartPod() corev1.PodSpec {
	uid, gid := int64(1001), int64(1001)
	return corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{FSGroup: &gid},
		Containers: []corev1.Container{{Name: "pgpool", Image: "bitnami/pgpool:4.6.3",
			SecurityContext: &corev1.SecurityContext{RunAsUser: &uid},
			Env: []corev1.EnvVar{
				{Name: "PGPOOL_BACKEND_NODES", Value: "0:pg-postgresql-0.pg-postgresql-headless:5432,"},
				{Name: "PGPOOL_SR_CHECK_USER", Value: "repmgr"},
				{Name: "PGPOOL_POSTGRES_USERNAME", Value: "postgres"},
				{Name: "PGPOOL_POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "password"}}},
				{Name: "PGPOOL_AUTHENTICATION_METHOD", Value: "scram-sha-256"},
				{Name: "PGPOOL_ENABLE_TLS", Value: "no"},
				{Name: "PGPOOL_HEALTH_CHECK_PSQL_TIMEOUT", Value: "6"},
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "empty-dir", MountPath: "/tmp", SubPath: "tmp-dir"}}}},
		Volumes: []corev1.Volume{{Name: "empty-dir", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}
}

func TestForPicksBitnamiByItsEnvironment(t *testing.T) {
	tg := &pgpool.Target{Kind: "Deployment", Template: corev1.PodTemplateSpec{Spec: chartPod()}}
	if l, err := For(tg); err != nil || l.Name() != "bitnami" {
		t.Fatalf("For(chart Deployment) = %v, %v", l, err)
	}
}

// What the container generates: plain host lines always; with a CA, any
// certificate over TLS first.
func TestGeneratedHBA(t *testing.T) {
	spec := chartPod()
	hba := GeneratedHBA(&spec.Containers[0])
	for _, want := range []string{"local    all    all", "host     all    repmgr    all    scram-sha-256", "host     all    postgres    all    scram-sha-256", "host     all    all    all    scram-sha-256"} {
		if !strings.Contains(hba, want) {
			t.Errorf("generated pool_hba.conf lacks %q:\n%s", want, hba)
		}
	}
	if strings.Contains(hba, "hostssl") {
		t.Errorf("hostssl without TLS:\n%s", hba)
	}
	on := ApplyBitnamiTLS(spec, 0, BitnamiTLS{On: true, ServerSecret: "s", Bundle: "b"})
	if hba := GeneratedHBA(&on.Containers[0]); !strings.Contains(hba, "hostssl  all    all    0.0.0.0/0     cert") {
		t.Errorf("with a CA file, no hostssl cert line:\n%s", hba)
	}
}

// TLS on renders what the chart renders for pgpool.tls.enabled=true, and
// off gives back exactly the template it started from.
func TestApplyBitnamiTLSRoundTrip(t *testing.T) {
	spec := chartPod()
	on := ApplyBitnamiTLS(spec, 0, BitnamiTLS{On: true, ServerSecret: "pg-server-cert", Bundle: "pg-ca-bundle", HBAConfigMap: "pg-configuration"})
	c := on.Containers[0]
	env := envMap(c.Env)
	for k, v := range map[string]string{"PGPOOL_ENABLE_TLS": "yes", "PGPOOL_TLS_CERT_FILE": BitnamiCertsDir + "/tls.crt", "PGPOOL_TLS_KEY_FILE": BitnamiCertsDir + "/tls.key",
		"PGPOOL_TLS_CA_FILE": BitnamiCADir + "/ca.pem", "PGPOOL_USER_HBA_FILE": BitnamiUserConfigDir + "/pool_hba.conf"} {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if len(on.InitContainers) != 1 || on.InitContainers[0].Name != BitnamiInitContainer || !strings.Contains(on.InitContainers[0].Command[2], "chown -R 1001:1001") {
		t.Errorf("init container: %+v", on.InitContainers)
	} else if sc := on.InitContainers[0].SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 1001 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.SeccompProfile == nil {
		t.Errorf("the init container does not meet the restricted Pod Security Standard: %+v", sc)
	}
	pc, _ := Bitnami{}.TemplateConf(&c)
	p := conf.ParsePgpoolConf(pc)
	if !p.Bool("ssl") || !p.Bool("enable_pool_hba") {
		t.Errorf("pgpool.conf from the environment:\n%s", pc)
	}
	if cm, key, _, ok := UserHBA(&on, &c); !ok || cm != "pg-configuration" || key != "pool_hba.conf" {
		t.Errorf("UserHBA = %s %s %v", cm, key, ok)
	}
	off := ApplyBitnamiTLS(on, 0, BitnamiTLS{DropHBA: true})
	if !reflect.DeepEqual(envMap(off.Containers[0].Env), envMap(spec.Containers[0].Env)) || !reflect.DeepEqual(off.Volumes, spec.Volumes) ||
		!reflect.DeepEqual(off.Containers[0].VolumeMounts, spec.Containers[0].VolumeMounts) || off.InitContainers != nil {
		t.Errorf("off is not the chart's template again:\n%+v\n%+v", off, spec)
	}
}

// The values say what the plugin wrote.
func TestHelmValues(t *testing.T) {
	v := HelmValues(BitnamiTLS{On: true, ServerSecret: "pg-server-cert", Bundle: "pg-ca-bundle"}, "local all all trust\n", 1001, 1001, Extras{})
	for _, want := range []string{"certificatesSecret: pg-server-cert", "name: PGPOOL_TLS_CA_FILE", "name: pg-ca-bundle", "poolHbaConfiguration: |\n    local all all trust",
		"volumePermissions:\n  podSecurityContext:\n    runAsUser: 1001\n    runAsGroup: 1001\n    runAsNonRoot: true"} {
		if !strings.Contains(v, want) {
			t.Errorf("values lack %q:\n%s", want, v)
		}
	}
}

// PGPOOL_EXTRA_FLAGS reaches pgpool as one word after run.sh's own
// --config-file and --hba-file; what would replace either is found.
func TestExtraFlagsFile(t *testing.T) {
	for flags, want := range map[string]string{
		"":                               "",
		"-D":                             "",
		"-d":                             "",
		"-a/tmp/hba":                     "pool_hba.conf",
		"-a /tmp/hba":                    "pool_hba.conf",
		"-nDa/tmp/hba":                   "pool_hba.conf",
		"--hba-file=/tmp/hba":            "pool_hba.conf",
		"--hba=/tmp/hba":                 "pool_hba.conf",
		"-f/tmp/pgpool.conf":             "pgpool.conf",
		"--config-file=/tmp/pgpool.conf": "pgpool.conf",
		"--config=/tmp/x":                "pgpool.conf",
		"-k/tmp/a":                       "", // the key file's path, not -a
		"-F/tmp/af":                      "",
		"--key-file=/tmp/hba-file":       "",
		"--discard-status":               "",
		"stop":                           "",
	} {
		if got := ExtraFlagsFile(flags); got != want {
			t.Errorf("ExtraFlagsFile(%q) = %q, want %q", flags, got, want)
		}
	}
}

// The chart's init scripts (a ConfigMap or a Secret at
// /docker-entrypoint-initdb.d) are named; other mounts are not.
func TestInitScripts(t *testing.T) {
	spec := chartPod()
	c := &spec.Containers[0]
	if got := InitScripts(&spec, c); len(got) != 0 {
		t.Fatalf("the chart's default pod: %v", got)
	}
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: "custom-init-scripts", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "pg-initdb"}}}},
		corev1.Volume{Name: "custom-init-scripts-secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "pg-initdb-secret"}}})
	c.VolumeMounts = append(c.VolumeMounts,
		corev1.VolumeMount{Name: "custom-init-scripts", MountPath: "/docker-entrypoint-initdb.d/"},
		corev1.VolumeMount{Name: "custom-init-scripts-secret", MountPath: "/docker-entrypoint-initdb.d/secret"})
	if got, want := InitScripts(&spec, c), []string{"ConfigMap pg-initdb", "Secret pg-initdb-secret"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("InitScripts = %v, want %v", got, want)
	}
}

// Helm replaces a list whole: the release's own extraEnvVars, extraVolumes
// and extraVolumeMounts (read off the Deployment: what the chart does not
// render) come first in the printed values, a secret value redacted; with
// TLS off only they remain.
func TestHelmValuesKeepTheReleasesExtras(t *testing.T) {
	spec := chartPod()
	c := &spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "PGPOOL_PORT_NUMBER", Value: "9999"}, corev1.EnvVar{Name: "MY_API_PASSWORD", Value: "hunter2"})
	spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "scratch", MountPath: "/scratch"})
	on := ApplyBitnamiTLS(spec, 0, BitnamiTLS{On: true, ServerSecret: "s", Bundle: "b", HBAConfigMap: "h"})
	x := UserExtras(&on, &on.Containers[0])
	if len(x.Env) != 2 || len(x.Volumes) != 1 || len(x.Mounts) != 1 {
		t.Fatalf("extras read off the template: %+v", x)
	}
	v := HelmValues(BitnamiTLS{On: true, ServerSecret: "s", Bundle: "b"}, "", 1001, 1001, x)
	for _, want := range []string{"  extraEnvVars:\n    - name: PGPOOL_PORT_NUMBER\n      value: \"9999\"\n", "value: <redacted>", "name: PGPOOL_TLS_CA_FILE",
		"  extraVolumes:\n    - emptyDir: {}\n      name: scratch\n", "  extraVolumeMounts:\n    - mountPath: /scratch\n      name: scratch\n"} {
		if !strings.Contains(v, want) {
			t.Errorf("values lack %q:\n%s", want, v)
		}
	}
	if strings.Contains(v, "hunter2") {
		t.Errorf("values print a password:\n%s", v)
	}
	off := HelmValues(BitnamiTLS{}, "", 1001, 1001, x)
	if strings.Contains(off, "PGPOOL_TLS_CA_FILE") || strings.Contains(off, "kubectl-pgpool-ca") || !strings.Contains(off, "name: scratch") {
		t.Errorf("values with TLS off:\n%s", off)
	}
}

// The chart joins registry, repository and tag (or digest) back into the
// reference the plugin's init container runs.
func TestSplitImage(t *testing.T) {
	for ref, want := range map[string][4]string{
		"kubectl-pgpool/bitnami-pgpool:local":         {"", "kubectl-pgpool/bitnami-pgpool", "local", ""},
		"docker.io/bitnami/pgpool:4.6.3-debian-12-r0": {"docker.io", "bitnami/pgpool", "4.6.3-debian-12-r0", ""},
		"localhost:5000/pgpool":                       {"localhost:5000", "pgpool", "latest", ""},
		"localhost/pgpool:1":                          {"localhost", "pgpool", "1", ""},
		"pgpool":                                      {"", "pgpool", "latest", ""},
		"reg.example:443/a/b:4.6@sha256:" + strings.Repeat("a", 64): {"reg.example:443", "a/b", "4.6", "sha256:" + strings.Repeat("a", 64)},
	} {
		r, repo, tag, d := SplitImage(ref)
		if got := [4]string{r, repo, tag, d}; got != want {
			t.Errorf("SplitImage(%q) = %q, want %q", ref, got, want)
		}
	}
}
