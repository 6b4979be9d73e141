package operation

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubectl-pgpool/kubectl-pgpool/internal/fakes"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/pgpool"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
)

// accessServer answers the reviews: rules for the SelfSubjectRulesReview
// (incomplete when asked), allowed for the SelfSubjectAccessReviews unless
// denied, and counts both.
type accessServer struct {
	rules      []authorizationv1.ResourceRule
	incomplete bool
	denied     map[string]bool // "verb resource[/sub]"
	ssrr, ssar atomic.Int64
}

func (s *accessServer) options() *run {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectrulesreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s.ssrr.Add(1)
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectRulesReview)
		r.Status.ResourceRules, r.Status.Incomplete = s.rules, s.incomplete
		return true, r, nil
	})
	c.PrependReactor("create", "selfsubjectaccessreviews", fakes.AccessReviews(func(perm string) bool {
		s.ssar.Add(1)
		return s.denied[perm]
	}))
	return &run{c: &Clients{Authorization: c.AuthorizationV1()}}
}

// accessFixture is a target and a plan that needs reads, a Certificate
// write and an eviction.
func accessFixture() (*pgpool.Target, *plan.Plan) {
	t := &pgpool.Target{Namespace: "demo", Name: "pgpool", GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"},
		Config: pgpool.Config{Kind: "Secret", Name: "pgpool-config"}}
	p := &plan.Plan{Operation: "rotate", Steps: []plan.Step{
		{Spec: plan.ApplyCertificateSpec{}},
		{Spec: plan.EvictSpec{}},
	}}
	return t, p
}

func TestCheckAccessRulesAllowWithoutAccessReviews(t *testing.T) {
	s := &accessServer{rules: []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}}
	o := s.options()
	tg, p := accessFixture()
	if err := o.checkAccess(context.Background(), tg, p); err != nil {
		t.Fatal(err)
	}
	if s.ssrr.Load() != 1 || s.ssar.Load() != 0 {
		t.Fatalf("%d rules reviews and %d access reviews, want 1 and 0", s.ssrr.Load(), s.ssar.Load())
	}
}

// A permission the rules do not grant is asked: here the Role grants pods
// but not pods/eviction (a subresource needs its own rule), and the access
// review says no.
func TestCheckAccessAsksWhatRulesDoNotGrant(t *testing.T) {
	s := &accessServer{
		rules: []authorizationv1.ResourceRule{
			{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{"", "discovery.k8s.io", "policy", "apps"}, Resources: []string{"*"}},
			{Verbs: []string{"create", "patch", "list"}, APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificates"}},
			{Verbs: []string{"create"}, APIGroups: []string{""}, Resources: []string{"pods"}},
		},
		denied: map[string]bool{"create pods/eviction": true},
	}
	o := s.options()
	tg, p := accessFixture()
	err := o.checkAccess(context.Background(), tg, p)
	if err == nil || !strings.Contains(err.Error(), `you may not create pods/eviction in namespace "demo"`) || strings.Contains(err.Error(), "certificates") {
		t.Fatalf("err = %v, want only pods/eviction refused", err)
	}
	if s.ssar.Load() != 1 {
		t.Fatalf("%d access reviews, want 1 (only the permission the rules do not grant)", s.ssar.Load())
	}
	// The rules are not the last word: what they do not list may still
	// be allowed (another authorizer).
	s.denied = nil
	if err := s.options().checkAccess(context.Background(), tg, p); err != nil {
		t.Fatalf("allowed by the access review, refused: %v", err)
	}
}

// An incomplete review (an authorizer that cannot list its rules) grants
// nothing by itself: every permission is asked.
func TestCheckAccessIncompleteRulesAskEverything(t *testing.T) {
	s := &accessServer{incomplete: true, denied: map[string]bool{"patch certificates": true},
		rules: []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}}
	o := s.options()
	tg, p := accessFixture()
	err := o.checkAccess(context.Background(), tg, p)
	if err == nil || !strings.Contains(err.Error(), "patch certificates.cert-manager.io") {
		t.Fatalf("err = %v, want patch certificates refused", err)
	}
	if want := len(needs(tg, p, false)); int(s.ssar.Load()) != want {
		t.Fatalf("%d access reviews, want %d (all)", s.ssar.Load(), want)
	}
}

// The pgpools of a fleet share the run's cache: one rules review per
// namespace.
func TestCheckAccessFleetReadsRulesOncePerNamespace(t *testing.T) {
	s := &accessServer{rules: []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}}
	o := s.options()
	o.o.Cache = &Cache{}
	tg, p := accessFixture()
	for _, ns := range []string{"a", "b", "a", "a", "b"} {
		op := *o
		tg.Namespace = ns
		if err := op.checkAccess(context.Background(), tg, p); err != nil {
			t.Fatal(err)
		}
	}
	if s.ssrr.Load() != 2 || s.ssar.Load() != 0 {
		t.Fatalf("%d rules reviews and %d access reviews, want 2 and 0", s.ssrr.Load(), s.ssar.Load())
	}
}

// A rule limited to some names (resourceNames) does not grant the verb on
// the whole resource: the plugin reads Secrets it finds by name, so the
// permission is asked, and the access review decides.
func TestCheckAccessNamedRulesAreAsked(t *testing.T) {
	s := &accessServer{
		rules: []authorizationv1.ResourceRule{
			{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"configmaps", "pods", "pods/eviction", "poddisruptionbudgets", "endpointslices", "certificates"}},
			{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{"pgpool-config"}},
		},
		denied: map[string]bool{"get secrets": true},
	}
	tg, p := accessFixture()
	err := s.options().checkAccess(context.Background(), tg, p)
	if err == nil || !strings.Contains(err.Error(), "you may not get secrets in") {
		t.Fatalf("err = %v, want get secrets refused", err)
	}
	if s.ssar.Load() != 1 {
		t.Fatalf("%d access reviews, want 1 (get secrets)", s.ssar.Load())
	}
}

// A transient error while checking cert-manager's API fails that pgpool
// only: the next one of the fleet asks again.
func TestCertManagerCheckNotCachedOnTransientError(t *testing.T) {
	disc := fake.NewClientset().Discovery().(*fakediscovery.FakeDiscovery)
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "cert-manager.io/v1"}}
	calls := 0
	disc.PrependReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		calls++
		if calls == 1 {
			return true, nil, apierrors.NewServiceUnavailable("etcd leader election")
		}
		return false, nil, nil
	})
	cache := &Cache{}
	if err := cache.certManagerServed(disc); err == nil {
		t.Fatal("the first check's 503 was not reported")
	}
	if err := cache.certManagerServed(disc); err != nil {
		t.Fatalf("the second pgpool got the first one's transient error: %v", err)
	}
	if err := cache.certManagerServed(disc); err != nil || calls != 2 {
		t.Fatalf("a final answer is asked again (%d calls): %v", calls, err)
	}
}
