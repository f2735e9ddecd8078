// Command h2peer is the HTTP/2 and gRPC peer of the tests: the program
// behind h2frame/testdata/make-captures.sh, and the gRPC client and servers
// of the end-to-end tests in e2e/. It has an HTTP/2 cleartext server and
// client built on golang.org/x/net/http2, and a gRPC server and client
// (google.golang.org/grpc) with a raw-bytes codec and a hand-written service
// description, so that no generated code is needed. It only listens on and
// dials loopback and test addresses (198.18.0.0/15, fd00::/8), and every
// client run is a fixed, small number of calls.
//
//	h2peer h2c-server ADDR   serve until killed
//	h2peer h2c-client ADDR   a GET, a POST, a large POST, a POST with trailers
//	h2peer grpc-server ADDR  serve until killed; each call, each message it
//	                         receives and each call's end is a JSON line on
//	                         stdout, as it happens
//	h2peer grpc-client ADDR  unary, client-, server- and bidi-streaming calls
//	h2peer grpc-hold ADDR    a client-streaming and a bidi call that each
//	                         send one message, print "waiting METHOD" and
//	                         wait for a line on stdin before they go on: a
//	                         test can see what reached a server while the
//	                         call is still open
//
// It is a module of its own (testdata is outside the main module's
// packages), so that the main module does not depend on gRPC.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

func main() {
	if len(os.Args) != 3 || !testAddr(os.Args[2]) {
		fmt.Fprintln(os.Stderr, "usage: h2peer h2c-server|h2c-client|grpc-server|grpc-client|grpc-hold HOST:PORT\n"+
			"HOST is a loopback address or one in 198.18.0.0/15 or fd00::/8")
		os.Exit(2)
	}
	addr := os.Args[2]
	var err error
	switch os.Args[1] {
	case "h2c-server":
		err = h2cServer(addr)
	case "h2c-client":
		err = h2cClient(addr)
	case "grpc-server":
		err = grpcServer(addr)
	case "grpc-client":
		err = grpcClient(addr)
	case "grpc-hold":
		err = grpcHold(addr)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "h2peer:", err)
		os.Exit(1)
	}
}

// testAddr reports whether addr is one this program may use: loopback, or
// the ranges the tests give their network namespaces.
func testAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.IsLoopback() ||
		netip.MustParsePrefix("198.18.0.0/15").Contains(ip) ||
		netip.MustParsePrefix("fd00::/8").Contains(ip)
}

// h2cServer answers every request with "ok METHOD PATH BODYLEN\n", and a
// trailer on /trailers.
func h2cServer(addr string) error {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/trailers" {
			w.Header().Set("Trailer", "X-Done")
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Seen-Path", r.URL.Path)
		fmt.Fprintf(w, "ok %s %s %d\n", r.Method, r.URL.RequestURI(), n)
		if r.URL.Path == "/trailers" {
			w.Header().Set("X-Done", "yes "+r.Trailer.Get("X-Client-Trailer"))
		}
	})
	srv := &http.Server{Addr: addr, Handler: h2c.NewHandler(h, &http2.Server{}), ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func h2cClient(addr string) error {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		},
	}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	base := "http://" + addr
	do := func(req *http.Request) error {
		req.Header.Set("User-Agent", "shadowtee-capture/1")
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		_, err = io.Copy(io.Discard, res.Body)
		return err
	}
	get, _ := http.NewRequest("GET", base+"/go/get?q=1", nil)
	get.Header.Set("X-Custom", "custom value")
	get.Header.Add("Cookie", "a=1")
	get.Header.Add("Cookie", "b=2")
	post, _ := http.NewRequest("POST", base+"/go/post", strings.NewReader("hello from go"))
	post.Header.Set("Content-Type", "text/plain")
	big, _ := http.NewRequest("PUT", base+"/go/big", bytes.NewReader(bytes.Repeat([]byte("0123456789abcdef"), 2560)))
	// A body of unknown length, then trailers: HEADERS, DATA, HEADERS.
	withTrailers, _ := http.NewRequest("POST", base+"/trailers", io.MultiReader(strings.NewReader("part one, "), strings.NewReader("part two")))
	withTrailers.Trailer = http.Header{"X-Client-Trailer": {"done"}}
	for _, req := range []*http.Request{get, post, big, withTrailers} {
		if err := do(req); err != nil {
			return err
		}
	}
	tr.CloseIdleConnections()
	return nil
}

// rawCodec passes messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, errors.New("raw codec: want *[]byte")
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return errors.New("raw codec: want *[]byte")
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

type echoServer interface{}

type echo struct{}

func unary(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	handle := func(ctx context.Context, req any) (any, error) {
		grpc.SetHeader(ctx, metadata.Pairs("x-served-by", "unary"))
		grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t"))
		out := append([]byte("echo:"), *req.(*[]byte)...)
		return &out, nil
	}
	if interceptor == nil {
		return handle(ctx, &in)
	}
	return interceptor(ctx, &in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/shadowtee.test.Echo/Unary"}, handle)
}

func clientStream(_ any, s grpc.ServerStream) error {
	var parts []string
	for {
		var in []byte
		if err := s.RecvMsg(&in); err == io.EOF {
			break
		} else if err != nil {
			return err
		}
		parts = append(parts, string(in))
	}
	out := []byte(strings.Join(parts, "+"))
	return s.SendMsg(&out)
}

func serverStream(_ any, s grpc.ServerStream) error {
	var in []byte
	if err := s.RecvMsg(&in); err != nil {
		return err
	}
	for i := range 3 {
		out := []byte(fmt.Sprintf("%s#%d", in, i))
		if err := s.SendMsg(&out); err != nil {
			return err
		}
	}
	return nil
}

func bidi(_ any, s grpc.ServerStream) error {
	for {
		var in []byte
		if err := s.RecvMsg(&in); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		out := append([]byte("bidi:"), in...)
		if err := s.SendMsg(&out); err != nil {
			return err
		}
	}
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "shadowtee.test.Echo",
	HandlerType: (*echoServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: unary}},
	Streams: []grpc.StreamDesc{
		{StreamName: "ClientStream", Handler: clientStream, ClientStreams: true},
		{StreamName: "ServerStream", Handler: serverStream, ServerStreams: true},
		{StreamName: "Bidi", Handler: bidi, ClientStreams: true, ServerStreams: true},
	},
}

// event is one line of grpc-server's log: a call's start (with its
// metadata), a message it received, or its end.
type event struct {
	Event    string              `json:"event"` // "call", "msg", "end"
	Call     int64               `json:"call"`  // numbers the calls in the order they started
	Method   string              `json:"method"`
	Metadata map[string][]string `json:"metadata,omitempty"`
	Data     []byte              `json:"data,omitempty"`
}

// eventLog writes events to stdout, one line each, as they happen.
type eventLog struct {
	mu    sync.Mutex
	enc   *json.Encoder
	calls atomic.Int64
}

func (l *eventLog) write(e event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.enc.Encode(e)
}

func (l *eventLog) start(ctx context.Context, method string) int64 {
	id := l.calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	l.write(event{Event: "call", Call: id, Method: method, Metadata: md})
	return id
}

func (l *eventLog) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := l.start(ctx, info.FullMethod)
	if b, ok := req.(*[]byte); ok {
		l.write(event{Event: "msg", Call: id, Method: info.FullMethod, Data: *b})
	}
	defer l.write(event{Event: "end", Call: id, Method: info.FullMethod})
	return handler(ctx, req)
}

func (l *eventLog) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := l.start(ss.Context(), info.FullMethod)
	defer l.write(event{Event: "end", Call: id, Method: info.FullMethod})
	return handler(srv, &loggedStream{ServerStream: ss, log: l, call: id, method: info.FullMethod})
}

// loggedStream logs each message as it is received, not when the call ends.
type loggedStream struct {
	grpc.ServerStream
	log    *eventLog
	call   int64
	method string
}

func (s *loggedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if b, ok := m.(*[]byte); ok && err == nil {
		s.log.write(event{Event: "msg", Call: s.call, Method: s.method, Data: *b})
	}
	return err
}

func grpcServer(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log := &eventLog{enc: json.NewEncoder(os.Stdout)}
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}),
		grpc.UnaryInterceptor(log.unary), grpc.StreamInterceptor(log.stream))
	s.RegisterService(&echoDesc, echo{})
	return s.Serve(l)
}

func grpcClient(addr string) error {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// No deadline on the calls themselves: grpc-timeout would vary.
	md := metadata.Pairs("x-user", "alice", "x-request-id", "r-1", "x-trace-bin", "\x00\x01\x02binary")
	call := metadata.NewOutgoingContext(context.WithoutCancel(ctx), md)

	in, out := []byte("ping"), []byte(nil)
	if err := cc.Invoke(call, "/shadowtee.test.Echo/Unary", &in, &out); err != nil {
		return fmt.Errorf("unary: %w", err)
	}
	stream := func(name string, desc *grpc.StreamDesc, msgs ...string) ([]string, error) {
		s, err := cc.NewStream(call, desc, "/shadowtee.test.Echo/"+name)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			b := []byte(m)
			if err := s.SendMsg(&b); err != nil {
				return nil, err
			}
		}
		if err := s.CloseSend(); err != nil {
			return nil, err
		}
		var got []string
		for {
			var b []byte
			if err := s.RecvMsg(&b); err == io.EOF {
				return got, nil
			} else if err != nil {
				return got, err
			}
			got = append(got, string(b))
		}
	}
	for _, c := range []struct {
		name string
		desc *grpc.StreamDesc
		msgs []string
	}{
		{"ClientStream", &echoDesc.Streams[0], []string{"one", "two", "three"}},
		{"ServerStream", &echoDesc.Streams[1], []string{"count"}},
		{"Bidi", &echoDesc.Streams[2], []string{"a", "bb", "ccc"}},
	} {
		if _, err := stream(c.name, c.desc, c.msgs...); err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
	}
	return nil
}

// grpcHold makes a client-streaming and a bidi call that stop half-way,
// after one message each, until a line arrives on stdin.
func grpcHold(addr string) error {
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	md := metadata.Pairs("x-user", "bob", "x-call", "held")
	call := metadata.NewOutgoingContext(context.WithoutCancel(ctx), md)
	stdin := bufio.NewReader(os.Stdin)
	wait := func(method string) error {
		fmt.Println("waiting", method)
		_, err := stdin.ReadString('\n')
		return err
	}
	send := func(s grpc.ClientStream, m string) error {
		b := []byte(m)
		return s.SendMsg(&b)
	}

	cs, err := cc.NewStream(call, &echoDesc.Streams[0], "/shadowtee.test.Echo/ClientStream")
	if err != nil {
		return err
	}
	if err := send(cs, "first"); err != nil {
		return err
	}
	if err := wait("ClientStream"); err != nil {
		return err
	}
	if err := send(cs, "second"); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	var got []byte
	if err := cs.RecvMsg(&got); err != nil {
		return fmt.Errorf("ClientStream: %w", err)
	}

	bs, err := cc.NewStream(call, &echoDesc.Streams[2], "/shadowtee.test.Echo/Bidi")
	if err != nil {
		return err
	}
	if err := send(bs, "ask"); err != nil {
		return err
	}
	if err := bs.RecvMsg(&got); err != nil {
		return fmt.Errorf("Bidi: %w", err)
	}
	if err := wait("Bidi"); err != nil {
		return err
	}
	if err := send(bs, "answer"); err != nil {
		return err
	}
	if err := bs.CloseSend(); err != nil {
		return err
	}
	for {
		if err := bs.RecvMsg(&got); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("Bidi: %w", err)
		}
	}
	fmt.Println("done")
	return nil
}
