package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/internal/sandbox"
	"github.com/shadowtee/shadowtee/shadow"
)

// TestE2EHTTP2 is HTTP/2 cleartext as its users send it: curl with prior
// knowledge, nghttp with and without the Upgrade: h2c path, h2load, and
// Go's own h2c client, against an h2c primary. Every request reaches the
// shadow once, as HTTP/2, with :authority suffixed and every other header
// and the body as the client sent them.
func TestE2EHTTP2(t *testing.T) {
	e := newEnvWith(t, func(h http.Handler) http.Handler { return h2c.NewHandler(h, &http2.Server{}) })
	e.startAgent()

	base := "http://" + sandbox.GatewayIPv4 + ":8080"
	body := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(body, bytes.Repeat([]byte("posted by nghttp\n"), 4000), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string // in the client's output: what says it spoke HTTP/2
	}{
		{"curl GET", []string{"curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
			"-H", "X-Test: curl", "-H", "Cookie: a=1; b=2", base + "/get?client=curl"}, "2"},
		{"curl POST", []string{"curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
			"-d", "name=value&x=1", base + "/post?client=curl"}, "2"},
		{"nghttp GET", []string{"nghttp", "-n", "-H", "x-client: nghttp", base + "/get?client=nghttp"}, ""},
		{"nghttp POST", []string{"nghttp", "-n", "-d", body, base + "/anything/nghttp-post"}, ""},
		{"nghttp -u", []string{"nghttp", "-n", "-u", "-v", base + "/get?client=nghttp-upgrade"}, "HTTP Upgrade success"},
		{"h2load", []string{"h2load", "-n", "300", "-c", "4", "-m", "8", base + "/get?client=h2load"}, "300 succeeded"},
	} {
		out := runInNetns(t, e.topo.Client, c.args...)
		if !strings.Contains(out, c.want) {
			t.Fatalf("%s: output lacks %q:\n%s", c.name, c.want, out)
		}
	}
	goH2CClient(t, e, base)

	want := e.primary.Len()
	if !e.shadow.Wait(t.Context(), want, 15*time.Second) {
		t.Fatalf("shadow received %d of %d requests", e.shadow.Len(), want)
	}
	time.Sleep(300 * time.Millisecond) // duplicates, if any, show up
	primary, mirrored := e.primary.Requests(), e.shadow.Requests()
	for i, p := range primary {
		if p.Header.Get("Upgrade") == "h2c" {
			// The request of the Upgrade path is HTTP/1.1 at the primary
			// and stream 1 of the HTTP/2 connection that follows: it goes
			// to the shadow as HTTP/2, without the fields of the upgrade,
			// which HTTP/2 forbids.
			p.Proto = "HTTP/2.0"
			p.Header = p.Header.Clone()
			for _, name := range []string{"Connection", "Upgrade", "Http2-Settings"} {
				p.Header.Del(name)
			}
			primary[i] = p
			continue
		}
		if p.Proto != "HTTP/2.0" {
			t.Errorf("%s %s reached the primary as %s: the clients were to speak HTTP/2", p.Method, p.Target, p.Proto)
		}
	}
	checkMirrored(t, primary, mirrored)
	checkSameHeaders(t, primary, mirrored)

	m := e.metrics()
	if got := m[`shadowtee_requests_total{result="mirrored"}`]; got != float64(want) {
		t.Errorf("metrics count %v mirrored requests, want %d", got, want)
	}
	if got := m[`shadowtee_requests_framed_total{proto="http2"}`]; got < float64(want-1) {
		// The one request of the Upgrade path is framed as HTTP/1.1.
		t.Errorf("metrics count %v requests framed as HTTP/2, want at least %d", got, want-1)
	}
	if got := m[`shadowtee_shadow_connections_opened_total{rule="default"}`]; got > 4 {
		t.Errorf("the agent opened %v connections to the shadow for %d multiplexed requests", got, want)
	}
	if code := e.stopAgent(); code != 0 {
		t.Errorf("agent exited with %d", code)
	}
}

// goH2CClient sends, over Go's h2c client: keep-alive GETs with repeated
// headers, a POST, a 1 MiB PUT (larger than every flow-control window's
// start) and a streamed body with trailers.
func goH2CClient(t *testing.T, e *env, base string) {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	c := &http.Client{Timeout: 20 * time.Second,
		Transport: &http.Transport{DialContext: e.topo.Client.DialContext, Protocols: protocols}}
	do := func(req *http.Request) {
		t.Helper()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("%s %s: primary answered %d over %s", req.Method, req.URL, resp.StatusCode, resp.Proto)
		}
	}
	for i := range 5 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/get?client=go&n=%d", base, i), nil)
		req.Host = "shadowing.example:8080"
		req.Header.Add("Cookie", "a=1")
		req.Header.Add("Cookie", "b=2")
		req.Header.Set("X-Custom", "custom value")
		do(req)
	}
	post, _ := http.NewRequest("POST", base+"/post?client=go", strings.NewReader("hello from go"))
	post.Header.Set("Content-Type", "text/plain")
	do(post)
	big := make([]byte, 1<<20)
	rand.Read(big)
	put, _ := http.NewRequest("PUT", base+"/put?client=go", bytes.NewReader(big))
	do(put)
	// The trailer's value is set before the body ends: the client reads it
	// at the end of the body.
	pr, pw := io.Pipe()
	streamed, _ := http.NewRequest("POST", base+"/anything/trailers?client=go", pr)
	streamed.Trailer = http.Header{"X-Client-Trailer": nil}
	go func() {
		for i := range 20 {
			fmt.Fprintf(pw, "chunk %d of a streamed body\n", i)
		}
		streamed.Trailer.Set("X-Client-Trailer", "done")
		pw.Close()
	}()
	do(streamed)
}

// checkSameHeaders checks that each primary request's twin at the shadow
// has the same header fields, but for X-Forwarded-For, which the shadow
// gets with the client appended.
func checkSameHeaders(t *testing.T, primary, mirrored []recorder.Request) {
	t.Helper()
	strip := func(h http.Header) http.Header {
		h = h.Clone()
		h.Del("X-Forwarded-For")
		return h
	}
	for _, p := range primary {
		i := slices.IndexFunc(mirrored, func(m recorder.Request) bool {
			return m.Method == p.Method && m.Target == p.Target && m.BodySHA256 == p.BodySHA256
		})
		if i < 0 {
			continue // checkMirrored tells
		}
		if got, want := strip(mirrored[i].Header), strip(p.Header); !maps.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s %s: the shadow got headers\n%v\nthe primary\n%v", p.Method, p.Target, got, want)
		}
	}
}

// runInNetns runs a command in ns, bounded in time, and returns its
// combined output; it fails the test if the command fails.
func runInNetns(t *testing.T, ns *sandbox.Netns, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(args[0]); err != nil {
		t.Fatalf("%s is needed (.ci/run installs it): %v", args[0], err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(t.Context(), args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// grpcEvent is a line of h2peer grpc-server's log.
type grpcEvent struct {
	Event    string              `json:"event"`
	Call     int64               `json:"call"`
	Method   string              `json:"method"`
	Metadata map[string][]string `json:"metadata"`
	Data     []byte              `json:"data"`
}

// grpcServer is an h2peer grpc-server in a namespace, with what it logged.
type grpcServer struct {
	mu      sync.Mutex
	events  []grpcEvent
	changed chan struct{}
}

func startGRPCServer(t *testing.T, ns *sandbox.Netns, addr string) *grpcServer {
	t.Helper()
	s := &grpcServer{changed: make(chan struct{})}
	cmd := exec.Command(h2peer, "grpc-server", addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := ns.Start(cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev grpcEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("grpc-server on %s: %v in %q", addr, err, sc.Text())
				continue
			}
			s.mu.Lock()
			s.events = append(s.events, ev)
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		cmd.Wait()
		if t.Failed() {
			t.Logf("grpc-server on %s, stderr:\n%s", addr, stderr.String())
		}
	})
	waitListening(t, ns, addr)
	return s
}

// waitFor waits until ok holds for what the server logged.
func (s *grpcServer) waitFor(t *testing.T, timeout time.Duration, ok func([]grpcEvent) bool) bool {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		done, changed := ok(s.events), s.changed
		s.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-deadline:
			return false
		case <-t.Context().Done():
			return false
		}
	}
}

// grpcCall is one call as a server saw it.
type grpcCall struct {
	Method   string
	Metadata map[string][]string
	Messages [][]byte
	Ended    bool
}

// calls gathers the log into calls, in the order they started.
func (s *grpcServer) calls() []grpcCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return gatherCalls(s.events)
}

func gatherCalls(events []grpcEvent) []grpcCall {
	var calls []grpcCall
	index := map[int64]int{}
	for _, ev := range events {
		switch ev.Event {
		case "call":
			index[ev.Call] = len(calls)
			calls = append(calls, grpcCall{Method: ev.Method, Metadata: ev.Metadata})
		case "msg":
			calls[index[ev.Call]].Messages = append(calls[index[ev.Call]].Messages, ev.Data)
		case "end":
			calls[index[ev.Call]].Ended = true
		}
	}
	return calls
}

// waitListening waits until something accepts connections on addr in ns.
func waitListening(t *testing.T, ns *sandbox.Netns, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := ns.DialContext(t.Context(), "tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s: %v", addr, err)
		}
	}
}

// TestE2EGRPC mirrors grpc-go calls of every kind: the shadow's grpc-go
// server receives the same calls, methods, metadata and messages, with
// :authority suffixed; a streaming call reaches the shadow while it lasts,
// not when it ends.
func TestE2EGRPC(t *testing.T) {
	e := newEnv(t)
	const port = "50051"
	primaryAddr := sandbox.GatewayIPv4 + ":" + port
	primary := startGRPCServer(t, e.topo.Gateway, primaryAddr)
	mirror := startGRPCServer(t, e.topo.Shadow, sandbox.ShadowIPv4+":"+port)
	e.startAgent("--port", port, "--shadow", "http://"+sandbox.ShadowIPv4+":"+port)

	runInNetns(t, e.topo.Client, h2peer, "grpc-client", primaryAddr)
	holdingCall(t, e, primaryAddr, mirror)

	want := primary.calls()
	if len(want) != 6 {
		t.Fatalf("the primary served %d calls, want 6", len(want))
	}
	if !mirror.waitFor(t, 15*time.Second, func(ev []grpcEvent) bool {
		calls := gatherCalls(ev)
		return len(calls) >= len(want) && !slices.ContainsFunc(calls, func(c grpcCall) bool { return !c.Ended })
	}) {
		t.Fatalf("the shadow served %d of %d calls", len(mirror.calls()), len(want))
	}
	time.Sleep(300 * time.Millisecond) // duplicates, if any, show up
	got := mirror.calls()
	if len(got) != len(want) {
		t.Errorf("the shadow served %d calls, the primary %d", len(got), len(want))
	}
	// Streams are concurrent: the shadow may start them in another order.
	wantAuthority := shadow.ShadowHost(primaryAddr)
	used := make([]bool, len(got))
	twin := func(p grpcCall) int {
		for i, m := range got {
			if !used[i] && m.Method == p.Method && slices.EqualFunc(m.Messages, p.Messages, bytes.Equal) {
				return i
			}
		}
		return -1
	}
	for _, p := range want {
		i := twin(p)
		if i < 0 {
			t.Errorf("%s with messages %q never reached the shadow", p.Method, p.Messages)
			continue
		}
		used[i] = true
		m := got[i]
		if a := m.Metadata[":authority"]; !slices.Equal(a, []string{wantAuthority}) {
			t.Errorf("%s: the shadow's :authority is %q, want %q", m.Method, a, wantAuthority)
		}
		if xff := m.Metadata["x-forwarded-for"]; len(xff) != 1 || !strings.Contains(xff[0], sandbox.ClientIPv4) {
			t.Errorf("%s: x-forwarded-for %q lacks the client %s", m.Method, xff, sandbox.ClientIPv4)
		}
		strip := func(md map[string][]string) map[string][]string {
			md = maps.Clone(md)
			delete(md, ":authority")
			delete(md, "x-forwarded-for")
			return md
		}
		if !maps.EqualFunc(strip(m.Metadata), strip(p.Metadata), slices.Equal) {
			t.Errorf("%s: the shadow's metadata\n%v\nthe primary's\n%v", m.Method, m.Metadata, p.Metadata)
		}
	}

	m := e.metrics()
	if got := m[`shadowtee_shadow_grpc_status_total{code="0",rule="default"}`]; got != float64(len(want)) {
		t.Errorf("metrics count %v answers with grpc-status 0, want %d", got, len(want))
	}
	if code := e.stopAgent(); code != 0 {
		t.Errorf("agent exited with %d", code)
	}
	if out := e.stdout.String(); !strings.Contains(out, "shadow grpc-status") {
		t.Errorf("summary lacks the gRPC statuses:\n%s", out)
	}
}

// holdingCall runs h2peer grpc-hold: a client-streaming call and a bidi
// call each stop after their first message until the shadow has it.
func holdingCall(t *testing.T, e *env, addr string, mirror *grpcServer) {
	t.Helper()
	cmd := exec.Command(h2peer, "grpc-hold", addr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := e.topo.Client.Start(cmd); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(stdout)
	for _, step := range []struct{ method, first string }{
		{"/shadowtee.test.Echo/ClientStream", "first"},
		{"/shadowtee.test.Echo/Bidi", "ask"},
	} {
		if !sc.Scan() || sc.Text() != "waiting "+strings.TrimPrefix(step.method, "/shadowtee.test.Echo/") {
			t.Fatalf("grpc-hold: %q, want it waiting in %s\n%s", sc.Text(), step.method, stderr.String())
		}
		// The call is open: its first message must be at the shadow now.
		if !mirror.waitFor(t, 10*time.Second, func(ev []grpcEvent) bool {
			return slices.ContainsFunc(gatherCalls(ev), func(c grpcCall) bool {
				return c.Method == step.method && len(c.Messages) == 1 && string(c.Messages[0]) == step.first && !c.Ended
			})
		}) {
			t.Fatalf("%s: the first message never reached the shadow while the call was open", step.method)
		}
		io.WriteString(stdin, "go on\n")
	}
	if !sc.Scan() || sc.Text() != "done" {
		t.Fatalf("grpc-hold: %q, want done\n%s", sc.Text(), stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("grpc-hold: %v\n%s", err, stderr.String())
	}
}
