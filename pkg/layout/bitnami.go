package layout

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
)

// Bitnami is a pgpool as Bitnami's postgresql-ha chart runs it: a
// Deployment whose container writes pgpool.conf and pool_hba.conf at every
// start from environment variables (PGPOOL_ENABLE_TLS, PGPOOL_TLS_*_FILE),
// the TLS Secret mounted as volume raw-certificates and copied by the init
// container into the emptyDir pgpool-certificates (the key made 0600), and
// a user pool_hba.conf (PGPOOL_USER_HBA_FILE, from the ConfigMap the chart
// makes of pgpool.poolHbaConfiguration) replacing the generated one.
//
// The plugin writes what the chart's values would render: pgpool.tls.*
// with the server Certificate's Secret, pgpool.poolHbaConfiguration, and
// the CA bundle as an extra volume (pgpool.extraVolumes) whose ca.pem is
// PGPOOL_TLS_CA_FILE (pgpool.extraEnvVars), so that HelmValues can say
// what to put into the release for the change to last.
type Bitnami struct{}

// The chart's names and paths.
const (
	BitnamiCertsDir      = "/opt/bitnami/pgpool/certs"
	BitnamiRawDir        = "/tmp/certs"
	BitnamiUserConfigDir = "/opt/bitnami/pgpool/user_config"
	BitnamiCADir         = "/opt/bitnami/pgpool/kubectl-pgpool-ca"
	BitnamiRawVolume     = "raw-certificates"
	BitnamiCertsVolume   = "pgpool-certificates"
	BitnamiConfigVolume  = "pgpool-config"
	BitnamiCAVolume      = "kubectl-pgpool-ca"
	BitnamiInitContainer = "init-chmod-data"
	// BitnamiInitScriptsDir is where the image's setup.sh looks for init
	// scripts.
	BitnamiInitScriptsDir = "/docker-entrypoint-initdb.d"
)

// IsBitnami reports whether container c is Bitnami's pgpool (it is
// configured by PGPOOL_BACKEND_NODES, which only that image reads).
func IsBitnami(c *corev1.Container) bool {
	for _, e := range c.Env {
		if e.Name == "PGPOOL_BACKEND_NODES" {
			return true
		}
	}
	return false
}

// Name names the layout.
func (Bitnami) Name() string { return "bitnami" }

// ConfigPatch writes pool_hba.conf into the user ConfigMap (pgpool.conf is
// the container's to write, from the environment: it is not written
// here).
func (Bitnami) ConfigPatch(c pgpool.Config, _, poolHBA string) []byte {
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": c.ResourceVersion}, "data": map[string]string{"pool_hba.conf": poolHBA}})
	return b
}

// ConfigFiles reads the user pool_hba.conf; pgpool.conf is not in the
// ConfigMap (TemplateConf has what the plugin reads of it).
func (Bitnami) ConfigFiles(data map[string]string) (string, string, bool) {
	hba, ok := data["pool_hba.conf"]
	return "", hba, ok
}

// TLSMountPath is where the init container copies the certificate and the
// key (the pgpool-certificates emptyDir).
func (Bitnami) TLSMountPath(string) string { return BitnamiCertsDir }

// Paths are the files PGPOOL_TLS_*_FILE name.
func (Bitnami) Paths() conf.Paths {
	return conf.Paths{Cert: BitnamiCertsDir + "/tls.crt", Key: BitnamiCertsDir + "/tls.key", CA: BitnamiCADir + "/ca.pem"}
}

// Owner is nil: the chart's Deployment has no owner reference to tell
// (Helm is found by pkg/owners, from its labels).
func (Bitnami) Owner(*pgpool.Target) *metav1.OwnerReference { return nil }

// StablePodNames is false: a Deployment's replacement pod has a new name.
func (Bitnami) StablePodNames() bool { return false }

// RolloutDone is a Deployment's.
func (Bitnami) RolloutDone(u *unstructured.Unstructured) (bool, string) {
	return Pgpool2OnK8s{}.RolloutDone(u)
}

// TemplateConf is what the container will write into pgpool.conf that the
// plugin reads (port, enable_pool_hba, ssl and its files), from its
// environment.
func (Bitnami) TemplateConf(c *corev1.Container) (string, bool) {
	env := envMap(c.Env)
	yes := func(k, def string) bool {
		v, ok := env[k]
		if !ok {
			v = def
		}
		return strings.EqualFold(v, "yes") || strings.EqualFold(v, "true") || v == "1"
	}
	port := env["PGPOOL_PORT_NUMBER"]
	if port == "" {
		port = "5432"
	}
	onOff := map[bool]string{true: "on", false: "off"}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by Bitnami's pgpool container from its environment\nport = %s\nenable_pool_hba = %s\nssl = %s\n", port, onOff[yes("PGPOOL_ENABLE_POOL_HBA", "yes")], onOff[yes("PGPOOL_ENABLE_TLS", "no")])
	if yes("PGPOOL_ENABLE_TLS", "no") {
		for _, kv := range [][2]string{{"ssl_cert", "PGPOOL_TLS_CERT_FILE"}, {"ssl_key", "PGPOOL_TLS_KEY_FILE"}, {"ssl_ca_cert", "PGPOOL_TLS_CA_FILE"}} {
			if v := env[kv[1]]; v != "" {
				fmt.Fprintf(&b, "%s = '%s'\n", kv[0], v)
			}
		}
	}
	return b.String(), true
}

// GeneratedHBA is the pool_hba.conf the container writes when no user file
// replaces it: local trust; with a CA file, certificate logins over TLS
// from anywhere first; the streaming-replication check user trusted from
// anywhere; then the database admin and everyone else with the
// authentication method, over TLS or not.
func GeneratedHBA(c *corev1.Container) string {
	env := envMap(c.Env)
	method := env["PGPOOL_AUTHENTICATION_METHOD"]
	if method == "" {
		method = "scram-sha-256"
	}
	all := method
	if strings.EqualFold(env["PGPOOL_ENABLE_LDAP"], "yes") {
		all = "pam pamservice=pgpool"
	}
	// The image never trusts the postgres and replication-check users,
	// even when PGPOOL_AUTHENTICATION_METHOD is trust (libpgpool.sh,
	// pgpool_create_pghba).
	users := "scram-sha-256"
	if method == "md5" {
		users = "md5"
	}
	var b strings.Builder
	b.WriteString("# the pool_hba.conf Bitnami's pgpool container generates from its environment\n")
	b.WriteString("local    all    all                  trust\n")
	if env["PGPOOL_TLS_CA_FILE"] != "" {
		b.WriteString("hostssl  all    all    0.0.0.0/0     cert\nhostssl  all    all    ::/0          cert\n")
	}
	if u := env["PGPOOL_SR_CHECK_USER"]; u != "" {
		fmt.Fprintf(&b, "host     all    %s    all    %s\n", u, users)
	}
	if v := env["PGPOOL_ENABLE_POOL_PASSWD"]; v == "" || strings.EqualFold(v, "yes") {
		u := env["PGPOOL_POSTGRES_USERNAME"]
		if u == "" {
			u = "postgres"
		}
		fmt.Fprintf(&b, "host     all    %s    all    %s\n", u, users)
	}
	fmt.Fprintf(&b, "host     all    all    all    %s\n", all)
	return b.String()
}

// UserHBA is where the container reads a user pool_hba.conf from: the
// ConfigMap volume mounted at the directory of PGPOOL_USER_HBA_FILE, and
// its key; ok is false when there is none.
func UserHBA(spec *corev1.PodSpec, c *corev1.Container) (cm, key, mountPath string, ok bool) {
	cm, key, mountPath, why := UserFile(spec, c, "PGPOOL_USER_HBA_FILE")
	return cm, key, mountPath, why == "" && cm != ""
}

// UserFile is where the container reads the file the variable env names
// (PGPOOL_USER_HBA_FILE, PGPOOL_USER_CONF_FILE): a key of a ConfigMap
// mounted as a directory (with items, the key a path names). why says
// why the plugin cannot read it there (a Secret, a projected volume, a
// subPath mount, a value from elsewhere), "" when it can or when the
// variable is not set (cm "").
func UserFile(spec *corev1.PodSpec, c *corev1.Container, env string) (cm, key, mountPath, why string) {
	for _, e := range c.Env {
		if e.Name == env && e.ValueFrom != nil {
			return "", "", "", env + " is set from another object (valueFrom)"
		}
	}
	file := envMap(c.Env)[env]
	if file == "" {
		return "", "", "", ""
	}
	for _, m := range c.VolumeMounts {
		dir := strings.TrimSuffix(m.MountPath, "/") + "/"
		if m.MountPath == file && m.SubPath != "" {
			return "", "", "", fmt.Sprintf("%s=%s is mounted with subPath from volume %s", env, file, m.Name)
		}
		if !strings.HasPrefix(file, dir) || m.SubPath != "" {
			continue
		}
		rel := strings.TrimPrefix(file, dir)
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.ConfigMap == nil {
				return "", "", "", fmt.Sprintf("%s=%s is in volume %s, which is not a ConfigMap (a Secret or a projected volume)", env, file, v.Name)
			}
			if len(v.ConfigMap.Items) == 0 {
				return v.ConfigMap.Name, rel, m.MountPath, ""
			}
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					return v.ConfigMap.Name, it.Key, m.MountPath, ""
				}
			}
			return "", "", "", fmt.Sprintf("%s=%s is not among the items of ConfigMap volume %s", env, file, v.Name)
		}
	}
	return "", "", "", fmt.Sprintf("%s=%s is on no volume the pod mounts", env, file)
}

// UserConfMarker starts, in the pgpool.conf discovery models for the
// container, the user pgpool.conf it appends (PGPOOL_USER_CONF_FILE).
const UserConfMarker = "# appended by the container from PGPOOL_USER_CONF_FILE"

// UserConfOverrides names what the user pgpool.conf in pc (after
// UserConfMarker) sets that the plugin writes through the environment, so
// that the user file would undo it: enable_pool_hba or ssl off, or other
// certificate files.
func UserConfOverrides(pc string) []string {
	i := strings.Index(pc, UserConfMarker)
	if i < 0 {
		return nil
	}
	user := conf.ParsePgpoolConf(pc[i:])
	var out []string
	for _, k := range []string{"enable_pool_hba", "ssl"} {
		if v, ok := user.Get(k); ok && !user.Bool(k) {
			out = append(out, k+" = "+v)
		}
	}
	for _, k := range []string{"ssl_cert", "ssl_key", "ssl_ca_cert"} {
		if v, ok := user.Get(k); ok {
			out = append(out, k+" = "+v)
		}
	}
	return out
}

// BitnamiManagedEnv says whether the plugin writes the pgpool container's
// variable name (a rollback puts back only these).
func BitnamiManagedEnv(name string) bool {
	switch name {
	case "PGPOOL_ENABLE_TLS", "PGPOOL_TLS_PREFER_SERVER_CIPHERS", "PGPOOL_TLS_CERT_FILE", "PGPOOL_TLS_KEY_FILE", "PGPOOL_TLS_CA_FILE",
		"PGPOOL_USER_HBA_FILE", "PGPOOL_ENABLE_POOL_HBA":
		return true
	}
	return false
}

// BitnamiManagedVolume says whether the plugin writes the volume (and its
// mount) name.
func BitnamiManagedVolume(name string) bool {
	switch name {
	case BitnamiRawVolume, BitnamiCertsVolume, BitnamiCAVolume, BitnamiConfigVolume:
		return true
	}
	return false
}

// BitnamiManagedInit says whether the plugin writes the init container
// name.
func BitnamiManagedInit(name string) bool { return name == BitnamiInitContainer }

// ModelledEnv are the variables of the pgpool container whose values the
// plugin models (pgpool.conf's TLS and pool_hba settings, and the
// pool_hba.conf the container writes).
var ModelledEnv = []string{"PGPOOL_ENABLE_POOL_HBA", "PGPOOL_USER_HBA_FILE", "PGPOOL_USER_CONF_FILE", "PGPOOL_ENABLE_TLS",
	"PGPOOL_TLS_CERT_FILE", "PGPOOL_TLS_KEY_FILE", "PGPOOL_TLS_CA_FILE", "PGPOOL_PORT_NUMBER", "PGPOOL_AUTHENTICATION_METHOD",
	"PGPOOL_ENABLE_LDAP", "PGPOOL_SR_CHECK_USER", "PGPOOL_ENABLE_POOL_PASSWD", "PGPOOL_POSTGRES_USERNAME", "PGPOOL_EXTRA_FLAGS"}

// ExtraFlagsFile says which file PGPOOL_EXTRA_FLAGS makes pgpool read in
// place of the pgpool.conf or pool_hba.conf the image's run.sh names
// ("pool_hba.conf", "pgpool.conf"), or "". run.sh appends the variable to
// pgpool's command line after its own --config-file and --hba-file, as
// one word (a scalar expanded as an array), and getopt_long lets the last
// one win: "-a FILE", "--hba-file=FILE", an abbreviation such as
// "--hba=FILE", or a cluster of short options that holds a or f.
func ExtraFlagsFile(flags string) string {
	w := strings.TrimLeft(flags, " \t")
	switch {
	case strings.HasPrefix(w, "--"):
		name, _, _ := strings.Cut(w[2:], "=")
		name = strings.TrimSpace(name)
		switch {
		case name == "":
		case strings.HasPrefix("hba-file", name):
			return "pool_hba.conf"
		case strings.HasPrefix("config-file", name):
			return "pgpool.conf"
		}
	case strings.HasPrefix(w, "-"):
		for _, r := range w[1:] {
			switch r {
			case 'a':
				return "pool_hba.conf"
			case 'f':
				return "pgpool.conf"
			case 'F', 'k', 'm': // the rest of the word is their argument
				return ""
			}
		}
	}
	return ""
}

// InitScripts are the volumes mounted at the image's init-script directory
// (/docker-entrypoint-initdb.d and below: the chart's pgpool.initdbScripts,
// initdbScriptsCM and initdbScriptsSecret). setup.sh runs their *.sh after
// it writes pgpool.conf and pool_hba.conf, so they can change either.
func InitScripts(spec *corev1.PodSpec, c *corev1.Container) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		if p := strings.TrimSuffix(m.MountPath, "/"); p != BitnamiInitScriptsDir && !strings.HasPrefix(p, BitnamiInitScriptsDir+"/") {
			continue
		}
		what := "volume " + m.Name
		for _, v := range spec.Volumes {
			switch {
			case v.Name != m.Name:
			case v.ConfigMap != nil:
				what = "ConfigMap " + v.ConfigMap.Name
			case v.Secret != nil:
				what = "Secret " + v.Secret.SecretName
			}
		}
		out = append(out, what)
	}
	return out
}

// HBAConfigMapName is the ConfigMap the chart makes of
// pgpool.poolHbaConfiguration for the Deployment NAME (the chart names its
// Deployment RELEASE-pgpool and the ConfigMap RELEASE-pgpool-configuration).
func HBAConfigMapName(deployment string) string { return deployment + "-configuration" }

// BitnamiTLS says what the pod template is to run.
type BitnamiTLS struct {
	// On: TLS with the server Certificate's Secret and the CA bundle;
	// off: no TLS, as the chart renders pgpool.tls.enabled=false.
	On                   bool
	ServerSecret, Bundle string
	// HBAConfigMap, when set, is mounted at BitnamiUserConfigDir and its
	// pool_hba.conf replaces the generated file; "" drops the one the
	// plugin mounted (DropHBA).
	HBAConfigMap string
	DropHBA      bool
	// EnforceHBA sets PGPOOL_ENABLE_POOL_HBA=yes.
	EnforceHBA bool
}

// ApplyBitnamiTLS returns a copy of spec whose container ci (the pgpool
// container) and volumes are as w says, the way the chart renders its
// values: env, the raw-certificates and pgpool-certificates volumes, the
// init container that copies the files (the pgpool image's shell, run as
// root to give them to the pgpool user), the CA volume.
func ApplyBitnamiTLS(spec corev1.PodSpec, ci int, w BitnamiTLS) corev1.PodSpec {
	out := *spec.DeepCopy()
	c := &out.Containers[ci]
	setEnv := func(name, value string) {
		for i := range c.Env {
			if c.Env[i].Name == name {
				c.Env[i] = corev1.EnvVar{Name: name, Value: value}
				return
			}
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
	dropEnv := func(names ...string) {
		c.Env = dropWhere(c.Env, func(e corev1.EnvVar) bool { return slices.Contains(names, e.Name) })
	}
	dropVolumes := func(names ...string) {
		out.Volumes = dropWhere(out.Volumes, func(v corev1.Volume) bool { return slices.Contains(names, v.Name) })
		c.VolumeMounts = dropWhere(c.VolumeMounts, func(m corev1.VolumeMount) bool { return slices.Contains(names, m.Name) })
	}
	if w.EnforceHBA {
		setEnv("PGPOOL_ENABLE_POOL_HBA", "yes")
	}
	if w.HBAConfigMap != "" {
		setEnv("PGPOOL_USER_HBA_FILE", BitnamiUserConfigDir+"/pool_hba.conf")
		if !hasVolume(out.Volumes, BitnamiConfigVolume) {
			out.Volumes = append(out.Volumes, corev1.Volume{Name: BitnamiConfigVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: w.HBAConfigMap}}}})
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: BitnamiConfigVolume, MountPath: BitnamiUserConfigDir})
		}
	}
	if w.DropHBA {
		dropEnv("PGPOOL_USER_HBA_FILE")
		dropVolumes(BitnamiConfigVolume)
	}
	if !w.On {
		setEnv("PGPOOL_ENABLE_TLS", "no")
		dropEnv("PGPOOL_TLS_PREFER_SERVER_CIPHERS", "PGPOOL_TLS_CERT_FILE", "PGPOOL_TLS_KEY_FILE", "PGPOOL_TLS_CA_FILE")
		dropVolumes(BitnamiRawVolume, BitnamiCertsVolume, BitnamiCAVolume)
		out.InitContainers = dropWhere(out.InitContainers, func(ic corev1.Container) bool { return ic.Name == BitnamiInitContainer })
		if len(out.InitContainers) == 0 {
			out.InitContainers = nil
		}
		return out
	}
	setEnv("PGPOOL_ENABLE_TLS", "yes")
	if envMap(c.Env)["PGPOOL_TLS_PREFER_SERVER_CIPHERS"] == "" {
		setEnv("PGPOOL_TLS_PREFER_SERVER_CIPHERS", "yes")
	}
	setEnv("PGPOOL_TLS_CERT_FILE", BitnamiCertsDir+"/tls.crt")
	setEnv("PGPOOL_TLS_KEY_FILE", BitnamiCertsDir+"/tls.key")
	setEnv("PGPOOL_TLS_CA_FILE", BitnamiCADir+"/ca.pem")
	raw := corev1.Volume{Name: BitnamiRawVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: w.ServerSecret}}}
	ca := corev1.Volume{Name: BitnamiCAVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
		LocalObjectReference: corev1.LocalObjectReference{Name: w.Bundle}, Items: []corev1.KeyToPath{{Key: "ca.pem", Path: "ca.pem"}}}}}
	replaced := false
	for i := range out.Volumes {
		if out.Volumes[i].Name == BitnamiRawVolume {
			out.Volumes[i], replaced = raw, true
		}
	}
	if !replaced {
		out.Volumes = append(out.Volumes, raw, corev1.Volume{Name: BitnamiCertsVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	if !hasVolume(out.Volumes, BitnamiCAVolume) {
		out.Volumes = append(out.Volumes, ca)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: BitnamiCAVolume, MountPath: BitnamiCADir, ReadOnly: true})
	}
	if !hasMount(c.VolumeMounts, BitnamiCertsVolume) {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: BitnamiCertsVolume, MountPath: BitnamiCertsDir})
	}
	// The chart's own (pgpool.tls.autoGenerated, or the user's certificate)
	// runs as root by default: it is replaced by the one the printed values
	// render, which runs as pgpool's user.
	has := false
	for i, ic := range out.InitContainers {
		if ic.Name == BitnamiInitContainer {
			out.InitContainers[i], has = copyContainer(&out, c), true
		}
	}
	if !has {
		out.InitContainers = append(out.InitContainers, copyContainer(&out, c))
	}
	return out
}

// copyContainer is the init container the chart renders with TLS on, with
// the security context HelmValues gives it (volumePermissions.
// podSecurityContext): it runs as pgpool's user, not as root (the chart's
// default), so that a namespace that enforces the restricted Pod Security
// Standard admits it; copying as that user makes the files its own, the
// chown changes nothing and the chmod is allowed.
func copyContainer(spec *corev1.PodSpec, c *corev1.Container) corev1.Container {
	uid, gid := CopyIDs(spec, c)
	return corev1.Container{
		Name: BitnamiInitContainer, Image: c.Image, ImagePullPolicy: c.ImagePullPolicy,
		Command:         []string{"/bin/sh", "-cx", fmt.Sprintf("cp %s/* %s/\nchown -R %d:%d %s/\nchmod 600 %s/tls.key\n", BitnamiRawDir, BitnamiCertsDir, uid, gid, BitnamiCertsDir, BitnamiCertsDir)},
		SecurityContext: copySecurityContext(uid, gid),
		VolumeMounts: []corev1.VolumeMount{
			{Name: BitnamiRawVolume, MountPath: BitnamiRawDir},
			{Name: BitnamiCertsVolume, MountPath: BitnamiCertsDir},
		},
	}
}

// CopyIDs are the user the chart's init container chowns the certificates
// to (pgpool.containerSecurityContext.runAsUser) and the group
// (pgpool.podSecurityContext.fsGroup), 1001 when unset, as the chart's.
func CopyIDs(spec *corev1.PodSpec, c *corev1.Container) (uid, gid int64) {
	uid, gid = 1001, 1001
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		uid = *c.SecurityContext.RunAsUser
	}
	if spec.SecurityContext != nil && spec.SecurityContext.FSGroup != nil {
		gid = *spec.SecurityContext.FSGroup
	}
	return uid, gid
}

// copySecurityContext meets the restricted Pod Security Standard.
func copySecurityContext(uid, gid int64) *corev1.SecurityContext {
	yes, no := true, false
	return &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &gid, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no,
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
}

// bitnamiChartEnv are the variables the chart's pgpool template renders
// itself (templates/pgpool/deployment.yaml); any other in the container
// came from pgpool.extraEnvVars.
const bitnamiChartEnv = `BITNAMI_DEBUG LDAP_BASE LDAP_BASE_LOOKUP LDAP_BIND_DN LDAP_BIND_PASSWORD LDAP_NSS_INITGROUPS_IGNOREUSERS
	LDAP_SCOPE LDAP_SEARCH_FILTER LDAP_SEARCH_MAP LDAP_TLS_REQCERT LDAP_URI PGPOOL_ADMIN_PASSWORD PGPOOL_ADMIN_PASSWORD_FILE
	PGPOOL_ADMIN_USERNAME PGPOOL_AUTHENTICATION_METHOD PGPOOL_BACKEND_NODES PGPOOL_CHILD_LIFE_TIME PGPOOL_CHILD_MAX_CONNECTIONS
	PGPOOL_CLIENT_IDLE_LIMIT PGPOOL_CONNECTION_LIFE_TIME PGPOOL_DISABLE_LOAD_BALANCE_ON_WRITE PGPOOL_ENABLE_CONNECTION_CACHE
	PGPOOL_ENABLE_LDAP PGPOOL_ENABLE_LOAD_BALANCING PGPOOL_ENABLE_LOG_CONNECTIONS PGPOOL_ENABLE_LOG_HOSTNAME
	PGPOOL_ENABLE_LOG_PCP_PROCESSES PGPOOL_ENABLE_LOG_PER_NODE_STATEMENT PGPOOL_ENABLE_TLS PGPOOL_HEALTH_CHECK_PSQL_TIMEOUT
	PGPOOL_LOG_LINE_PREFIX PGPOOL_MAX_POOL PGPOOL_NUM_INIT_CHILDREN PGPOOL_POSTGRES_CUSTOM_PASSWORDS PGPOOL_POSTGRES_CUSTOM_USERS
	PGPOOL_POSTGRES_PASSWORD PGPOOL_POSTGRES_PASSWORD_FILE PGPOOL_POSTGRES_USERNAME PGPOOL_RESERVED_CONNECTIONS
	PGPOOL_SR_CHECK_DATABASE PGPOOL_SR_CHECK_PASSWORD PGPOOL_SR_CHECK_PASSWORD_FILE PGPOOL_SR_CHECK_USER PGPOOL_TLS_CA_FILE
	PGPOOL_TLS_CERT_FILE PGPOOL_TLS_KEY_FILE PGPOOL_TLS_PREFER_SERVER_CIPHERS PGPOOL_USER_CONF_FILE PGPOOL_USER_HBA_FILE
	REPMGR_NAMESPACE`

// chartVolume says whether the chart's pgpool template renders the volume
// name itself; any other came from pgpool.extraVolumes (and a mount of it
// from pgpool.extraVolumeMounts).
func chartVolume(name string) bool {
	switch name {
	case "custom-init-scripts", "custom-init-scripts-secret", "empty-dir", BitnamiCertsVolume, BitnamiConfigVolume, "pgpool-creds", "postgresql-creds", BitnamiRawVolume:
		return true
	}
	return false
}

// Extras are what the release's values add to the chart's pgpool
// container: pgpool.extraEnvVars, extraVolumes and extraVolumeMounts, as
// rendered (the plugin's own, the CA bundle's variable, volume and mount
// and PGPOOL_ENABLE_POOL_HBA, left out).
type Extras struct {
	Env     []corev1.EnvVar
	Volumes []corev1.Volume
	Mounts  []corev1.VolumeMount
	// Image and PullPolicy are the pgpool container's, which the plugin's
	// certificate-copying init container runs: the chart's runs
	// volumePermissions.image, so the values name the same.
	Image      string
	PullPolicy corev1.PullPolicy
}

// UserExtras reads the Extras off the pod template: what the chart does
// not render itself.
func UserExtras(spec *corev1.PodSpec, c *corev1.Container) Extras {
	x := Extras{Image: c.Image, PullPolicy: c.ImagePullPolicy}
	for _, e := range c.Env {
		if !slices.Contains(strings.Fields(bitnamiChartEnv), e.Name) && !BitnamiManagedEnv(e.Name) {
			x.Env = append(x.Env, e)
		}
	}
	for _, v := range spec.Volumes {
		if !chartVolume(v.Name) && !BitnamiManagedVolume(v.Name) {
			x.Volumes = append(x.Volumes, v)
		}
	}
	for _, m := range c.VolumeMounts {
		if !chartVolume(m.Name) && !BitnamiManagedVolume(m.Name) {
			x.Mounts = append(x.Mounts, m)
		}
	}
	return x
}

// yamlList writes items as a YAML list under key at indent 2, each item's
// secret variable value redacted (the line says so).
func yamlList[T any](b *strings.Builder, key string, items []T) {
	if len(items) == 0 {
		fmt.Fprintf(b, "  %s: []\n", key)
		return
	}
	fmt.Fprintf(b, "  %s:\n", key)
	for _, it := range items {
		if e, ok := any(it).(corev1.EnvVar); ok && e.Value != "" && conf.SecretEnv(e.Name) {
			e.Value = conf.Redacted
			fmt.Fprintf(b, "    # %s: put your value back in place of %s\n", e.Name, conf.Redacted)
			it = any(e).(T)
		}
		y, _ := yaml.Marshal(it)
		for i, l := range strings.Split(strings.TrimRight(string(y), "\n"), "\n") {
			prefix := "      "
			if i == 0 {
				prefix = "    - "
			}
			b.WriteString(prefix + l + "\n")
		}
	}
}

// HelmValues are the postgresql-ha values that render what w sets up, for
// a release whose values are otherwise kept (helm upgrade --reuse-values
// -f FILE). Helm replaces a list whole: extraEnvVars, extraVolumes and
// extraVolumeMounts hold the release's own (x) and then the plugin's
// (none with TLS off, so that a later remove takes the plugin's out). With
// TLS on they give the chart's init container the security context the
// plugin's has (copySecurityContext: uid and gid from CopyIDs).
func HelmValues(w BitnamiTLS, hba string, uid, gid int64, x Extras) string {
	var b strings.Builder
	b.WriteString("pgpool:\n")
	env, vols, mounts := x.Env, x.Volumes, x.Mounts
	if !w.On {
		b.WriteString("  tls:\n    enabled: false\n")
	} else {
		fmt.Fprintf(&b, "  tls:\n    enabled: true\n    autoGenerated: false\n    certificatesSecret: %s\n    certFilename: tls.crt\n    certKeyFilename: tls.key\n    certCAFilename: \"\"\n", w.ServerSecret)
		env = append(append([]corev1.EnvVar(nil), env...), corev1.EnvVar{Name: "PGPOOL_TLS_CA_FILE", Value: BitnamiCADir + "/ca.pem"})
		if w.EnforceHBA {
			env = append(env, corev1.EnvVar{Name: "PGPOOL_ENABLE_POOL_HBA", Value: "yes"})
		}
		vols = append(append([]corev1.Volume(nil), vols...), corev1.Volume{Name: BitnamiCAVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: w.Bundle}, Items: []corev1.KeyToPath{{Key: "ca.pem", Path: "ca.pem"}}}}})
		mounts = append(append([]corev1.VolumeMount(nil), mounts...), corev1.VolumeMount{Name: BitnamiCAVolume, MountPath: BitnamiCADir, ReadOnly: true})
	}
	yamlList(&b, "extraEnvVars", env)
	yamlList(&b, "extraVolumes", vols)
	yamlList(&b, "extraVolumeMounts", mounts)
	if hba != "" {
		b.WriteString("  poolHbaConfiguration: |\n")
		for _, l := range strings.Split(strings.TrimRight(hba, "\n"), "\n") {
			b.WriteString("    " + l + "\n")
		}
	}
	if w.On {
		fmt.Fprintf(&b, "volumePermissions:\n  podSecurityContext:\n    runAsUser: %d\n    runAsGroup: %d\n    runAsNonRoot: true\n    allowPrivilegeEscalation: false\n    capabilities:\n      drop: [ALL]\n    seccompProfile:\n      type: RuntimeDefault\n", uid, gid)
		// The init container as the plugin writes it: pgpool's image, no
		// resources (the chart's preset would add requests the plugin's
		// has not: with server-side apply, Helm 4's default, any
		// difference is a conflict with the plugin's field manager).
		if x.Image != "" {
			reg, repo, tag, digest := SplitImage(x.Image)
			fmt.Fprintf(&b, "  image:\n    registry: %q\n    repository: %q\n    tag: %q\n    digest: %q\n", reg, repo, tag, digest)
			if x.PullPolicy != "" {
				fmt.Fprintf(&b, "    pullPolicy: %s\n", x.PullPolicy)
			}
		}
		b.WriteString("  resourcesPreset: none\n  resources: {}\n")
	}
	return b.String()
}

// SplitImage splits an image reference into the registry, repository, tag
// and digest Bitnami's charts take (common.images.image joins them back:
// REGISTRY/REPOSITORY:TAG, or @DIGEST). The registry is the first path
// component when it looks like a host (a dot, a port, or localhost). A
// reference with neither tag nor digest gets the tag latest, as the
// runtime reads it (an empty tag is the chart's appVersion).
func SplitImage(ref string) (registry, repository, tag, digest string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref, digest = ref[:i], ref[i+1:]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref, tag = ref[:i], ref[i+1:]
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	if i := strings.Index(ref, "/"); i > 0 {
		if first := ref[:i]; strings.ContainsAny(first, ".:") || first == "localhost" {
			return first, ref[i+1:], tag, digest
		}
	}
	return "", ref, tag, digest
}

func envMap(env []corev1.EnvVar) map[string]string {
	m := map[string]string{}
	for _, e := range env {
		if e.ValueFrom == nil {
			m[e.Name] = e.Value
		}
	}
	return m
}

func dropWhere[T any](s []T, drop func(T) bool) []T {
	var out []T
	for _, x := range s {
		if !drop(x) {
			out = append(out, x)
		}
	}
	return out
}

func hasVolume(vs []corev1.Volume, name string) bool {
	for _, v := range vs {
		if v.Name == name {
			return true
		}
	}
	return false
}

func hasMount(ms []corev1.VolumeMount, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}
