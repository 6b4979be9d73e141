package runner

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/conf"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/plan"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/tls"
	"github.com/kubectl-pgpool/kubectl-pgpool/pkg/verify"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Verify modes (--verify).
const (
	VerifyOn       = "true"
	VerifyOff      = "false"
	VerifyRequired = "required"
)

func (r *Runner) dialer() verify.Dialer {
	return verify.PortForwardDialer(r.Clients.Config, r.Clients.Core, r.Target.Namespace, r.Target.Port())
}

// expectation is what the pods must serve, read from the TLS Secrets once
// per step (every pod of a step is checked against the same Secrets).
func (r *Runner) expectation(ctx context.Context, tlsOn bool) (verify.Expect, error) {
	if r.want != nil && r.want.TLS == tlsOn {
		return *r.want, nil
	}
	want, err := verify.Expectation(ctx, r.Clients.Core, r.Target.Namespace, r.Target.Name, tlsOn)
	if err != nil {
		return want, err
	}
	r.want = &want
	return want, nil
}

// checkPod proves by a handshake what one pod serves. A pod that cannot be
// reached at all is reported once and skipped, unless --verify=required.
func (r *Runner) checkPod(ctx context.Context, pod string, tlsOn bool, report func(string)) (string, error) {
	if r.Verify == VerifyOff || r.verifyUnavailable {
		return "", nil
	}
	want, err := r.expectation(ctx, tlsOn)
	if err != nil {
		return "", err
	}
	proof := verify.Prove(ctx, r.dialer(), pod, want)
	if proof.Check == "mismatch" {
		// What the pod must serve was read before it started (while it was
		// being replaced): if cert-manager wrote the Secret since (a renewal,
		// or an issuance it repeated), the pod may serve the newer one.
		// Compare with the Secret as it is now before calling it a mismatch.
		r.want = nil
		if want, err = r.expectation(ctx, tlsOn); err != nil {
			return "", err
		}
		proof = verify.Prove(ctx, r.dialer(), pod, want)
	}
	if proof.Check == "unreachable" {
		if r.Verify == VerifyRequired {
			return "", fmt.Errorf("handshake check (--verify=required): %w", proof.Err)
		}
		// One pod out of reach is skipped; after two in a row (no kubelet
		// behind the nodes, as with kwok, or port-forward not allowed) the
		// rest of the run stops trying, and says so.
		r.unreached = append(r.unreached, pod)
		r.dialFailures++
		if r.dialFailures >= 2 {
			r.verifyUnavailable = true
			report(fmt.Sprintf("handshake check skipped for the remaining pods: two pods in a row could not be reached (%v; a node without a kubelet, such as kwok's, cannot port-forward; --verify=required makes this an error)", proof.Err))
		} else {
			report(fmt.Sprintf("handshake check skipped for pod %s: %v (the next pod is still tried; --verify=required makes this an error)", pod, proof.Err))
		}
		return "handshake not checked", nil
	}
	r.dialFailures = 0
	if proof.Err != nil {
		return "", proof.Err
	}
	s := proof.Served
	if !s.TLS {
		return "SSLRequest answered 'N' (no TLS), as expected", nil
	}
	return fmt.Sprintf("serves serial %s over %s", s.Serial, s.Version), nil
}

// refusePod is the negative proof of one pod that served what it should:
// the logins the policy forbids are tried with no credential. One that
// gets on is an error; one that cannot be judged (no connection, or a rule
// only port-forward's address meets) is reported, and an error under
// --verify=required.
func (r *Runner) refusePod(ctx context.Context, pod string, ref *plan.Refuse, tlsOn bool, report func(string)) (string, error) {
	if ref == nil || r.Verify == VerifyOff || r.verifyUnavailable || (!ref.Plaintext && !ref.Certless) {
		return "", nil
	}
	m, _ := conf.NewHBAModel(ref.PoolHBA, ref.Enforced, tlsOn) // a rule it cannot parse is named by no explanation
	pol := verify.Policy{Plaintext: ref.Plaintext, Certless: ref.Certless, TLS: tlsOn, Cert: ref.Certless, PoolHBA: ref.PoolHBA, Model: m, KeepTrust: ref.KeepTrust}
	res := verify.ProveRefusal(ctx, r.dialer(), pod, pol)
	if err := res.Failure(pol); err != nil {
		if res.Plaintext == verify.Accepted || res.Certless == verify.Accepted || r.Verify == VerifyRequired {
			return "", fmt.Errorf("pod %s: %w", pod, err)
		}
		report(fmt.Sprintf("pod %s: %v (--verify=required makes this an error)", pod, err))
		return "refusals not proven", nil
	}
	var what []string
	if ref.Plaintext {
		what = append(what, "plain logins")
	}
	if ref.Certless {
		what = append(what, "TLS logins without a client certificate")
	}
	return "refuses " + strings.Join(what, " and "), nil
}

// provenPod is a pod this run proved in its roll: the certificate it
// served (nil without TLS), its containers' restarts then, and the login
// that went through it. pgpool reads its certificate only when it starts,
// so the proof holds while no container restarts and the Secret holds the
// same certificate: the verify step does not dial such a pod again.
type provenPod struct {
	leaf     []byte
	tls      bool
	restarts int32
	login    string
}

func restarts(p *corev1.Pod) (n int32) {
	for _, c := range p.Status.ContainerStatuses {
		n += c.RestartCount
	}
	return n
}

// remember records that pod p was proven against the expectation of this
// step (r.want), with login if one went through.
func (r *Runner) remember(p *corev1.Pod, tlsOn bool, login string) {
	if r.proven == nil {
		r.proven = map[types.UID]provenPod{}
	}
	var leaf []byte
	if r.want != nil && r.want.Leaf != nil {
		leaf = r.want.Leaf.Raw
	}
	r.proven[p.UID] = provenPod{leaf: leaf, tls: tlsOn, restarts: restarts(p), login: login}
}

// stillProven reports whether p was proven in this run's roll against
// what it must serve now: TLS as tlsOn, the leaf the server Secret holds
// now (leafPEM), the login asked, and no container restarted since.
func (r *Runner) stillProven(p *corev1.Pod, tlsOn bool, leafPEM []byte, login string) bool {
	pr, ok := r.proven[p.UID]
	if !ok || pr.tls != tlsOn || pr.restarts != restarts(p) || (login != "" && pr.login != login) {
		return false
	}
	if !tlsOn {
		return true
	}
	now, err := tls.ParseFirstCert(leafPEM)
	return err == nil && now != nil && bytes.Equal(pr.leaf, now.Raw)
}
