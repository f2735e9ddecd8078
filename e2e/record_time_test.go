package e2e

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/shadowtee/shadowtee/internal/agentproc"
	"github.com/shadowtee/shadowtee/internal/sandbox"
	"github.com/shadowtee/shadowtee/pcapfile"
	"github.com/shadowtee/shadowtee/reassembly"
)

// TestE2ERecordTimestamps checks that `shadowtee record` stamps each
// packet with when it was seen: requests sent 300 ms apart must be 300 ms
// apart in the file, and every time must fall within the recording. Replay
// paces itself by these times (--speed 1), and dry-run prints them.
func TestE2ERecordTimestamps(t *testing.T) {
	e := newEnv(t)
	out := filepath.Join(t.TempDir(), "times.pcapng")
	var recOut, recErr lockedBuffer
	rec, err := agentproc.Start(e.topo.Gateway, binary, []string{"record",
		"--iface", sandbox.GatewayIface, "--port", "8080", "--out", out, "--log-format", "json"}, &recOut, &recErr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-rec.Exited():
		default:
			rec.Kill()
		}
	})
	if _, err := rec.WaitReady(t.Context(), 15*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, recErr.String())
	}
	const gap = 300 * time.Millisecond
	start := time.Now()
	c := e.client()
	for i := range 3 {
		if i > 0 {
			time.Sleep(gap)
		}
		resp, err := c.Get(fmt.Sprintf("http://%s:8080/get?n=%d", sandbox.GatewayIPv4, i))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	end := time.Now()
	time.Sleep(100 * time.Millisecond)
	if code, err := rec.Stop(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("record exited %d, %v\n%s", code, err, recErr.String())
	}

	r, err := pcapfile.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var (
		seg         reassembly.Segment
		first, last time.Time
		n           int
	)
	for {
		err := r.Next(&seg)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			first = seg.Time
		}
		last = seg.Time
		n++
		if seg.Time.Before(start.Add(-time.Second)) || seg.Time.After(end.Add(time.Second)) {
			t.Errorf("segment %d stamped %v, outside the recording (%v to %v)", n, seg.Time.UTC(), start.UTC(), end.UTC())
		}
	}
	if n == 0 {
		t.Fatal("nothing recorded")
	}
	if spread := last.Sub(first); spread < 2*gap-50*time.Millisecond {
		t.Errorf("%d segments recorded over %v, within %v of each other: want them %v apart", n, end.Sub(start), spread, 2*gap)
	}
}
