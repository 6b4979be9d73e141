package restart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// A 409 from the UID precondition means the pod was already replaced; any
// other 409 is retried, not taken for a replacement.
func TestEvictConflicts(t *testing.T) {
	pods := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		name     string
		first    error
		attempts int
		refused  bool
	}{
		{"uid precondition (storage)", apierrors.NewConflict(pods, "pgpool-0", errors.New("Precondition failed: UID in precondition: a, UID in object meta: b")), 1, false},
		{"uid precondition (eviction)", apierrors.NewConflict(pods, "pgpool-0", errors.New("the UID in the precondition (a) does not match the UID in record (b). The object might have been deleted and then recreated")), 1, false},
		{"budget status changed", apierrors.NewConflict(schema.GroupResource{Group: "policy", Resource: "poddisruptionbudgets"}, "pgpool", fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again")), 2, false},
		{"budget refuses", apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0), 2, true},
	} {
		c := fake.NewClientset()
		n := 0
		c.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != "eviction" {
				return false, nil, nil
			}
			n++
			if n == 1 {
				return true, nil, tc.first
			}
			return true, nil, nil
		})
		var said []string
		refused, err := Evict(context.Background(), c.PolicyV1(), "demo", "pgpool-0", "uid-0", Options{RetryInterval: 5 * time.Millisecond, OnProgress: func(s string) { said = append(said, s) }})
		if err != nil || n != tc.attempts {
			t.Errorf("%s: %v after %d attempts, want %d", tc.name, err, n, tc.attempts)
		}
		if (refused >= 5*time.Millisecond) != tc.refused {
			t.Errorf("%s: refused for %s; want a wait reported %v (a budget's 429 only)", tc.name, refused, tc.refused)
		}
		if tc.attempts == 2 && !tc.refused && (len(said) == 0 || !strings.Contains(said[0], "conflict")) {
			t.Errorf("%s: the retry was not reported: %q", tc.name, said)
		}
	}
}
