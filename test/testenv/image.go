package testenv

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// pluginImage is the plugin's own image, built and imported once.
type pluginImage struct {
	once sync.Once
	name string
	err  error
}

// PluginImage builds the plugin's image as `make image` does (the static
// binary on a scratch base, an OCI layout tarball made by hack/image) and
// imports it into the real node's containerd, once per run; it returns the
// image's name.
func (e *Env) PluginImage(t testing.TB) string {
	t.Helper()
	e.image.once.Do(func() {
		dir, err := os.MkdirTemp("", "kubectl-pgpool-image-")
		if err != nil {
			e.image.err = err
			return
		}
		defer func() { _ = os.RemoveAll(dir) }()
		bin, tarball := filepath.Join(dir, "kubectl-pgpool"), filepath.Join(dir, "image.tar")
		name := "localhost/kubectl-pgpool:test"
		steps := []struct {
			dir  string
			env  []string
			args []string
		}{
			{e.Root, []string{"CGO_ENABLED=0"}, []string{"go", "build", "-trimpath", "-o", bin, "./cmd/kubectl-pgpool"}},
			{filepath.Join(e.Root, "hack", "image"), nil, []string{"go", "run", ".", "-binary", bin, "-name", name, "-out", tarball}},
			{e.Root, nil, []string{"ctr", "--address", filepath.Join(e.Cluster.ClusterDir, "node", "containerd", "containerd.sock"), "-n", "k8s.io", "images", "import", tarball}},
		}
		for _, s := range steps {
			c := exec.Command(s.args[0], s.args[1:]...)
			c.Dir, c.Env = s.dir, append(os.Environ(), s.env...)
			if out, err := c.CombinedOutput(); err != nil {
				e.image.err = fmt.Errorf("%v: %v\n%s", s.args, err, out)
				return
			}
		}
		e.image.name = name
	})
	if e.image.err != nil {
		t.Fatal(e.image.err)
	}
	return e.image.name
}

// APIServer is HOST:PORT of the API server (the node reaches it there).
func (e *Env) APIServer(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(e.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
