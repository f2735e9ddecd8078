package agent

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/internal/recorder"
	"github.com/shadowtee/shadowtee/shadow"
)

// replayTo replays the capture at path at full speed to a shadow at url,
// with one rule whose shadow speaks protocol ("" follows the capture).
func replayTo(t *testing.T, path, url, protocol string) *Summary {
	t.Helper()
	rules := &config.File{Rules: []config.Rule{{Name: "default", Percentage: 100, HostSuffix: true,
		Shadow:  config.Shadow{URL: url, Protocol: protocol, Timeout: 15 * time.Second, Queue: 64 << 20},
		Headers: config.Headers{XForwardedFor: true}}}}
	sum, err := Replay(context.Background(), ReplayConfig{Path: path, Rules: rules, Limits: cliLimits(),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("replay %s: %v", path, err)
	}
	return sum
}

// startRecorder serves a recorder over HTTP/1.1, or over h2c too.
func startRecorder(t *testing.T, h2c bool) (*recorder.Recorder, string) {
	t.Helper()
	rec := recorder.New(nil)
	srv := httptest.NewUnstartedServer(rec)
	if h2c {
		srv.Config.Protocols = new(http.Protocols)
		srv.Config.Protocols.SetHTTP1(true)
		srv.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return rec, srv.URL
}

// By default a request goes to the shadow in the protocol it was captured
// in; `shadow.protocol` makes every request go in the shadow's.
func TestShadowProtocol(t *testing.T) {
	curl := filepath.Join(h2Captures, "curl.pcap")        // three requests over h2c
	grpc := filepath.Join(h2Captures, "grpc.pcap")        // four gRPC calls
	http1 := filepath.Join(capturesDir, "pipelined.pcap") // HTTP/1.1
	protos := func(rec *recorder.Recorder) []string {
		var out []string
		for _, r := range rec.Requests() {
			out = append(out, r.Proto)
		}
		return slices.Compact(out)
	}

	t.Run("default follows the capture", func(t *testing.T) {
		rec, url := startRecorder(t, true)
		for _, path := range []string{curl, http1} {
			rec.Reset()
			sum := replayTo(t, path, url, "")
			want := "HTTP/2.0"
			if path == http1 {
				want = "HTTP/1.1"
			}
			if got := protos(rec); sum.Requests.Mirrored == 0 || !slices.Equal(got, []string{want}) {
				t.Errorf("%s: the shadow got %v (%d mirrored), want only %s", filepath.Base(path), got, sum.Requests.Mirrored, want)
			}
		}
	})

	t.Run("http1: HTTP/2 sent as HTTP/1.1, gRPC not at all", func(t *testing.T) {
		rec, url := startRecorder(t, false)
		sum := replayTo(t, curl, url, config.ProtocolHTTP1)
		if got := protos(rec); sum.Requests.Mirrored != 3 || !slices.Equal(got, []string{"HTTP/1.1"}) {
			t.Errorf("the shadow got %v (%d mirrored), want 3 requests as HTTP/1.1", got, sum.Requests.Mirrored)
		}
		for _, r := range rec.Requests() {
			if r.Host != "127.0.0.1-shadow:18091" {
				t.Errorf("%s %s: Host %q, want :authority with the suffix", r.Method, r.Target, r.Host)
			}
		}
		rec.Reset()
		sum = replayTo(t, grpc, url, config.ProtocolHTTP1)
		if n := sum.Requests.Skipped[skipProtocolMismatch.String()]; n != 4 || rec.Len() != 0 {
			t.Errorf("gRPC to an HTTP/1.1 shadow: %d calls skipped as protocol_mismatch, %d sent; want 4 and 0", n, rec.Len())
		}
	})

	t.Run("http2: HTTP/1.1 sent as HTTP/2", func(t *testing.T) {
		rec, url := startRecorder(t, true)
		sum := replayTo(t, http1, url, config.ProtocolHTTP2)
		if got := protos(rec); sum.Requests.Mirrored == 0 || !slices.Equal(got, []string{"HTTP/2.0"}) {
			t.Errorf("the shadow got %v (%d mirrored), want only HTTP/2.0", got, sum.Requests.Mirrored)
		}
	})
}

// The command line and the rules file take their defaults from config; a
// zero field reaches the sender, which must fill in the same.
func TestDefaultsAgree(t *testing.T) {
	for _, c := range []struct {
		name           string
		config, sender int64
	}{
		{"timeout", int64(config.DefaultTimeout), int64(shadow.DefaultTimeout)},
		{"idle timeout", int64(config.DefaultIdleTimeout), int64(shadow.DefaultIdleTimeout)},
		{"max connections", config.DefaultMaxConnections, shadow.DefaultMaxConnections},
		{"max pending", config.DefaultMaxPending, shadow.DefaultMaxPending},
		{"max requests", config.DefaultMaxRequests, shadow.DefaultMaxRequests},
	} {
		if c.config != c.sender {
			t.Errorf("%s: config's default %d, the sender's %d", c.name, c.config, c.sender)
		}
	}
}
