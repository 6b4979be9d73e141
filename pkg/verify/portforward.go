package verify

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream" //nolint:staticcheck // client-go's SPDY dialer (transport/spdy) returns this package's types
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// PortForwardDialer returns a Dialer that reaches port of a pod in ns
// through the API server's port-forward (the same path as `kubectl
// port-forward`), without opening any local listener.
func PortForwardDialer(cfg *rest.Config, core corev1client.CoreV1Interface, ns string, port int) Dialer {
	return func(ctx context.Context, pod string) (net.Conn, error) {
		transport, upgrader, err := spdy.RoundTripperFor(cfg)
		if err != nil {
			return nil, err
		}
		u := core.RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).SubResource("portforward").URL()
		d := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
		sc, err := dialContext(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("port-forward to pod %s/%s: %w", ns, pod, err)
		}
		h := http.Header{}
		h.Set(corev1.StreamType, corev1.StreamTypeError)
		h.Set(corev1.PortHeader, strconv.Itoa(port))
		h.Set(corev1.PortForwardRequestIDHeader, "0")
		errStream, err := sc.CreateStream(h)
		if err != nil {
			_ = sc.Close()
			return nil, fmt.Errorf("port-forward to pod %s/%s: error stream: %w", ns, pod, err)
		}
		_ = errStream.Close()
		h.Set(corev1.StreamType, corev1.StreamTypeData)
		data, err := sc.CreateStream(h)
		if err != nil {
			_ = sc.Close()
			return nil, fmt.Errorf("port-forward to pod %s/%s: data stream: %w", ns, pod, err)
		}
		c := &streamConn{conn: sc, data: data, errDone: make(chan struct{})}
		go func() {
			defer close(c.errDone)
			if msg, _ := io.ReadAll(errStream); len(msg) > 0 {
				c.errMsg = fmt.Errorf("port-forward to pod %s/%s port %d: %s", ns, pod, port, msg)
			}
		}()
		return c, nil
	}
}

// dialContext upgrades the port-forward connection, giving up when ctx
// ends (--timeout, Ctrl-C): client-go's SPDY dialer takes no context, so a
// hung upgrade runs on in the background and its connection, if it ever
// comes, is closed.
func dialContext(ctx context.Context, d httpstream.Dialer) (httpstream.Connection, error) {
	type dialed struct {
		c   httpstream.Connection
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, _, err := d.Dial(portforward.PortForwardProtocolV1Name)
		ch <- dialed{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				_ = r.c.Close()
			}
		}()
		return nil, context.Cause(ctx)
	}
}

// errStreamWait bounds the wait for the error stream after the data stream
// ended.
const errStreamWait = 5 * time.Second

// streamConn is a port-forward data stream as a net.Conn. Deadlines close
// the connection when they pass (the stream has no deadlines of its own).
type streamConn struct {
	conn io.Closer
	data io.ReadWriteCloser
	// errMsg is what the error stream said; it is set before errDone closes.
	errMsg  error
	errDone chan struct{}

	mu    sync.Mutex
	timer *time.Timer
	once  sync.Once
}

// Read reads the data stream. When it ends, the error stream says why (as
// kubectl port-forward does, it is read to its end before giving up).
func (c *streamConn) Read(b []byte) (int, error) {
	n, err := c.data.Read(b)
	if err != nil {
		select {
		case <-c.errDone:
			if c.errMsg != nil {
				return n, c.errMsg
			}
		case <-time.After(errStreamWait):
		}
	}
	return n, err
}

func (c *streamConn) Write(b []byte) (int, error) { return c.data.Write(b) }

func (c *streamConn) Close() error {
	c.once.Do(func() {
		_ = c.data.Close()
		_ = c.conn.Close()
	})
	return nil
}

func (c *streamConn) LocalAddr() net.Addr  { return pfAddr{} }
func (c *streamConn) RemoteAddr() net.Addr { return pfAddr{} }

func (c *streamConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
	if !t.IsZero() {
		c.timer = time.AfterFunc(time.Until(t), func() { _ = c.Close() })
	}
	return nil
}

func (c *streamConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *streamConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

type pfAddr struct{}

func (pfAddr) Network() string { return "portforward" }
func (pfAddr) String() string  { return "portforward" }
