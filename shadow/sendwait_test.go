package shadow

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// SendWait waits for room instead of dropping: a replay at full speed into a
// slow shadow loses nothing.
func TestSendWaitWaitsForRoom(t *testing.T) {
	ts, rc := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		w.Write([]byte("ok"))
	})
	body := strings.Repeat("b", 1000)
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 2, QueueRequests: 4, QueueBytes: 8 << 10})
	s.Start()
	const n = 200
	for i := range n {
		if !s.SendWait(t.Context(), request(t, clientAddr(i%3), i, body)) {
			t.Fatalf("request %d not queued", i)
		}
	}
	closeSender(t, s)
	st := s.Stats()
	if got := st.Mirrored.Load(); got != n {
		t.Errorf("mirrored %d of %d", got, n)
	}
	var dropped uint64
	for i := range st.Dropped {
		dropped += st.Dropped[i].Load()
	}
	if dropped != 0 || len(rc.all()) != n {
		t.Errorf("dropped %d, server saw %d", dropped, len(rc.all()))
	}
}

// A SendWait still waiting when its context ends drops the request and
// counts it; one larger than the whole budget never waits.
func TestSendWaitGivesUp(t *testing.T) {
	release := make(chan struct{})
	ts, _ := newRecordingServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		<-release
	})
	defer close(release)
	s := newSender(t, SenderConfig{URL: ts.URL, Workers: 1, QueueRequests: 1, QueueBytes: 4 << 10, Timeout: time.Minute})
	s.Start()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	queued := 0
	for i := range 20 {
		if s.SendWait(ctx, request(t, clientAddr(0), i, strings.Repeat("x", 1000))) {
			queued++
		}
	}
	st := s.Stats()
	if queued == 0 || queued == 20 || st.Dropped[DropQueueFull].Load() != uint64(20-queued) {
		t.Errorf("queued %d, dropped %d: want some of each, all counted", queued, st.Dropped[DropQueueFull].Load())
	}
	if s.SendWait(t.Context(), request(t, clientAddr(1), 99, strings.Repeat("y", 5000))) {
		t.Error("a request larger than the byte budget was queued")
	}
}
