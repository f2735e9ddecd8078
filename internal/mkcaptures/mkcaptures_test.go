package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/agent"
	"github.com/shadowtee/shadowtee/config"
	"github.com/shadowtee/shadowtee/internal/sink"
)

const committed = "../../testdata/captures"

// TestCommittedCapturesUpToDate regenerates every synthesised capture and
// its README table, and requires the committed files to be the same bytes:
// the generator is deterministic, and what is committed is what it makes.
func TestCommittedCapturesUpToDate(t *testing.T) {
	dir := t.TempDir()
	if err := writeAll(dir); err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{recordedMix.file: true}
	fresh, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fresh {
		known[f.Name()] = true
		want, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(committed, f.Name()))
		if err != nil {
			t.Errorf("%v (go run ./internal/mkcaptures writes it)", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the generator writes: run go run ./internal/mkcaptures -out testdata/captures", f.Name())
		}
	}
	all, err := os.ReadDir(committed)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range all {
		if !known[f.Name()] {
			t.Errorf("%s in %s is neither made by the generator nor recorded", f.Name(), committed)
		}
	}
}

// TestBigCaptureReplays writes a small capture of the kind -big makes and
// replays it: every request whose exchange was finished before the end of
// the file must be framed whole, with no gap and no connection whose client
// was not found.
func TestBigCaptureReplays(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.pcapng")
	st, err := writeBig(path, 8<<20, 44)
	if err != nil {
		t.Fatal(err)
	}
	if st.bytes < 8<<20 || st.requests < 1000 || st.conns <= bigConcurrent {
		t.Fatalf("capture too small: %+v", st)
	}
	rules := &config.File{Rules: []config.Rule{{Name: "default", Percentage: 100, HostSuffix: true,
		Shadow: config.Shadow{URL: "http://shadow.invalid"}}}}
	sum, err := agent.Replay(context.Background(), agent.ReplayConfig{Path: path, DryRun: io.Discard, Rules: rules,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	q := sum.Requests
	if sum.Segments.Gaps != 0 || sum.File.UndecidedDropped != 0 || sum.File.Packets != uint64(st.packets) {
		t.Errorf("replay: %+v, %+v", sum.File, sum.Segments)
	}
	// Only the exchanges in progress at the end of the file are cut short.
	if len(q.Skipped) > 1 || q.Skipped["incomplete"] > bigConcurrent {
		t.Errorf("skipped %v", q.Skipped)
	}
	if q.Framed+bigConcurrent < uint64(st.requests) || q.Framed > uint64(st.requests) {
		t.Errorf("framed %d of %d requests", q.Framed, st.requests)
	}
}

// TestSinkAnswersPipelined sends a GET, a POST and a chunked POST in one
// write and expects three answers.
func TestSinkAnswersPipelined(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrCh := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- sink.Serve(ctx, "127.0.0.1:0", func(a string) { addrCh <- a }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c, err := net.DialTimeout("tcp", <-addrCh, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
		"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
	br := bufio.NewReader(c)
	for i := range 3 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("answer %d: %d", i+1, resp.StatusCode)
		}
	}
}
