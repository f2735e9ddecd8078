// Command capture is the peer program behind h2frame/testdata/make-captures.sh:
// an HTTP/2 cleartext server and client built on golang.org/x/net/http2, and
// a gRPC server and client (google.golang.org/grpc) with a raw-bytes codec
// and a hand-written service description, so that no generated code is
// needed. It only ever listens on and dials loopback addresses, and every
// client run is a fixed, small number of calls.
//
//	capture h2c-server ADDR      serve until killed
//	capture h2c-client ADDR      a GET, a POST, a large POST, a POST with trailers
//	capture grpc-server ADDR     serve until killed
//	capture grpc-client ADDR     unary, client-, server- and bidi-streaming calls
//
// It is a module of its own (testdata is outside the main module's
// packages), so that the main module does not depend on gRPC.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

func main() {
	if len(os.Args) != 3 || !strings.HasPrefix(os.Args[2], "127.0.0.1:") {
		fmt.Fprintln(os.Stderr, "usage: capture h2c-server|h2c-client|grpc-server|grpc-client 127.0.0.1:PORT")
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
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "capture:", err)
		os.Exit(1)
	}
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

func unary(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	grpc.SetHeader(ctx, metadata.Pairs("x-served-by", "unary"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t"))
	out := append([]byte("echo:"), in...)
	return &out, nil
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

func grpcServer(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
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
