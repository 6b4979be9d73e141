// Command image builds kubectl-pgpool's container image without Docker or
// a registry: the static binary on an empty (scratch) base, user 65532, as
// an OCI image layout tarball that `ctr images import` and `skopeo copy
// oci-archive:` take. The same binary gives the same tarball: every
// timestamp is SOURCE_DATE_EPOCH (default 0).
//
//	go run . -binary BIN -name kubectl-pgpool/kubectl-pgpool:v0.1.0 -out IMAGE.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	bin := flag.String("binary", "", "the static kubectl-pgpool binary")
	name := flag.String("name", "localhost/kubectl-pgpool:dev", "the image's fully qualified name (the name a node looks up)")
	out := flag.String("out", "", "the OCI layout tarball to write")
	platform := flag.String("platform", runtime.GOOS+"/"+runtime.GOARCH, "OS/ARCH of the binary")
	flag.Parse()
	if err := build(*bin, *name, *out, *platform); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(bin, name, out, platform string) error {
	if bin == "" || out == "" {
		return fmt.Errorf("-binary and -out are required")
	}
	epoch := time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
		}
		epoch = time.Unix(n, 0).UTC()
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	layerTar, err := rootfs(binary, epoch)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	osName, arch, _ := strings.Cut(platform, "/")
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = osName, arch, v1.Time{Time: epoch}
	cfg.Config = v1.Config{Entrypoint: []string{"/kubectl-pgpool"}, User: "65532:65532", WorkingDir: "/tmp",
		Env:    []string{"HOME=/tmp", "PATH=/"},
		Labels: map[string]string{"org.opencontainers.image.title": "kubectl-pgpool"}}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	if img, err = mutate.CreatedAt(img, v1.Time{Time: epoch}); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kubectl-pgpool-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	tag := name[strings.LastIndex(name, ":")+1:]
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": tag,
	}), layout.WithPlatform(v1.Platform{OS: osName, Architecture: arch})); err != nil {
		return err
	}
	if err := tarDir(dir, out, epoch); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("%s %s %s\n", out, name, d)
	return nil
}

// rootfs is the image's one layer: the binary, a passwd and group naming
// user 65532, and a /tmp (HOME; the job mounts an emptyDir there).
func rootfs(binary []byte, epoch time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, data []byte) error {
		h.ModTime, h.Format = epoch, tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, e := range []struct {
		h    tar.Header
		data []byte
	}{
		{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n")},
		{tar.Header{Name: "etc/group", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("root:x:0:\nnonroot:x:65532:\n")},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
		{tar.Header{Name: "kubectl-pgpool", Typeflag: tar.TypeReg, Mode: 0o755}, binary},
	} {
		h := e.h
		if err := add(&h, e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// tarDir writes the layout directory as a tarball, files in name order,
// every timestamp epoch, owned by root.
func tarDir(dir, out string, epoch time.Time) error {
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(out + ".tmp")
	tw := tar.NewWriter(f)
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: epoch, Mode: 0o644, Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}
