// Command fresh is the only way out of the network namespace in which
// hack/fresh-debian.sh runs the README's two commands: an HTTP proxy
// (CONNECT for https, plain forwarding for http) served on a unix socket
// outside, and a bridge inside that listens on loopback and hands each
// connection to that socket. apt and Go reach Debian's archive and the Go
// module proxy through it; nothing else inside can reach anything outside.
//
//	fresh -serve SOCKET                       (outside: the proxy)
//	fresh -bridge SOCKET -listen 127.0.0.1:N  (inside: loopback to the proxy)
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	serve := flag.String("serve", "", "serve the proxy on this unix socket")
	bridge := flag.String("bridge", "", "bridge -listen to the proxy on this unix socket")
	listen := flag.String("listen", "127.0.0.1:3128", "with -bridge: the loopback address to listen on")
	flag.Parse()
	switch {
	case *serve != "":
		_ = os.Remove(*serve)
		l, err := net.Listen("unix", *serve)
		if err != nil {
			log.Fatal(err)
		}
		accept(l, proxy)
	case *bridge != "":
		l, err := net.Listen("tcp", *listen)
		if err != nil {
			log.Fatal(err)
		}
		accept(l, func(c net.Conn) {
			up, err := net.Dial("unix", *bridge)
			if err != nil {
				log.Print(err)
				_ = c.Close()
				return
			}
			pipe(c, up)
		})
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func accept(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go handle(c)
	}
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(a, b); done <- struct{}{} }()
	go func() { _, _ = io.Copy(b, a); done <- struct{}{} }()
	<-done
	_ = a.Close()
	_ = b.Close()
}

// proxy answers one client connection: a CONNECT becomes a tunnel to its
// host; other requests (absolute URLs, as a client sends a proxy) are sent
// on, one after another on the same connection, as apt pipelines them.
func proxy(c net.Conn) {
	defer func() { _ = c.Close() }()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Method == http.MethodConnect {
			up, err := net.DialTimeout("tcp", req.Host, 30*time.Second)
			if err != nil {
				fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
				return
			}
			fmt.Fprintf(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			if n := br.Buffered(); n > 0 {
				b, _ := br.Peek(n)
				_, _ = up.Write(b)
			}
			pipe(c, up)
			return
		}
		req.RequestURI = ""
		req.Header.Del("Proxy-Connection")
		resp, err := transport.RoundTrip(req)
		if err != nil {
			fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			return
		}
		err = resp.Write(c)
		_ = resp.Body.Close()
		if err != nil || req.Close {
			return
		}
	}
}

var transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
