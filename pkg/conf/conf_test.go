package conf

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/testfiles"
)

var kubedbPaths = Paths{Cert: "/opt/pgpool-II/tls/tls.crt", Key: "/opt/pgpool-II/tls/tls.key", CA: "/opt/pgpool-II/tls/ca.pem"}

func read(t *testing.T, name string) string {
	t.Helper()
	return string(testfiles.Read(t, filepath.Join("testdata", name)))
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	testfiles.Golden(t, filepath.Join("testdata", "golden", name), []byte(got))
}

// TestRenderGolden renders pgpool.conf of both layouts with TLS on (and
// pool_hba enforced) and off.
func TestRenderGolden(t *testing.T) {
	for _, layout := range []string{"kubedb", "k8s"} {
		confText := read(t, layout+"-pgpool.conf")
		for _, on := range []bool{true, false} {
			name := fmt.Sprintf("%s-pgpool-ssl-%v.golden", layout, on)
			t.Run(name, func(t *testing.T) {
				c := ParsePgpoolConf(confText)
				if on {
					EnableTLS(c, kubedbPaths)
					Enforce(c)
				} else {
					DisableTLS(c, kubedbPaths)
				}
				golden(t, name, "### pgpool.conf diff\n"+Diff(confText, c.String(), 1))
				// Unrelated lines and comments are kept.
				for _, l := range strings.Split(confText, "\n") {
					if k, _, _, ok := splitLine(l); ok && strings.HasPrefix(k, "ssl") {
						continue
					}
					if !strings.Contains(c.String(), l) {
						t.Errorf("line %q was lost", l)
					}
				}
			})
		}
	}
}

func TestAddRemoveRoundTrip(t *testing.T) {
	for _, layout := range []string{"kubedb", "k8s"} {
		orig := read(t, layout+"-pgpool.conf")
		c := ParsePgpoolConf(orig)
		EnableTLS(c, kubedbPaths)
		if !c.Bool("ssl") {
			t.Fatalf("%s: ssl not on after EnableTLS", layout)
		}
		if v, _ := c.Get("ssl_ca_cert"); v != kubedbPaths.CA {
			t.Fatalf("%s: ssl_ca_cert = %q", layout, v)
		}
		DisableTLS(c, kubedbPaths)
		if c.Bool("ssl") {
			t.Fatalf("%s: ssl still on", layout)
		}
		if layout == "kubedb" && c.String() != orig {
			t.Errorf("remove did not restore the seed's file:\n%s", Diff(orig, c.String(), 1))
		}
		if _, ok := c.Get("ssl_cert"); ok {
			t.Errorf("%s: ssl_cert still set", layout)
		}
	}
}

func TestGetLastWins(t *testing.T) {
	c := ParsePgpoolConf("ssl = on\nport = 9999 # the port\nssl = 'off'\n#ssl_cert = 'x'\n")
	if c.Bool("ssl") {
		t.Fatal("last line should win")
	}
	c.Set("port", "5432")
	if !strings.Contains(c.String(), "port = 5432 # the port") {
		t.Fatalf("comment lost: %q", c.String())
	}
	c.Set("ssl_cert", Quote("/a b"))
	if !strings.Contains(c.String(), "#ssl_cert = 'x'\nssl_cert = '/a b'\n") {
		t.Fatalf("not placed after template: %q", c.String())
	}
	if v, _ := c.Get("ssl_cert"); v != "/a b" {
		t.Fatalf("quote round trip: %q", v)
	}
}

func TestValidateModes(t *testing.T) {
	for _, tc := range []struct {
		ssl, auth, err string
	}{
		{"require", "cert", ""},
		{"prefer", "cert", "needs every client on TLS"},
		{"bogus", "md5", "unknown ssl mode"},
		{"require", "trust", "unknown client auth mode"},
	} {
		err := ValidateModes(tc.ssl, tc.auth)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s/%s: %v, want %q", tc.ssl, tc.auth, err, tc.err)
		}
	}
}
