package h2frame

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/shadowtee/shadowtee/httpmsg"
)

// warmFrames returns the frames of one request as a warm connection sends
// it (the encoder has sent it before, so its fields are indexed), and the
// offsets of the stream ids in them, to be renumbered per request.
func warmFrames(w *wire, write func(w *wire, id uint32)) (first, frames []byte, idAt []int) {
	write(w, 1)
	first = w.take()
	write(w, 3)
	frames = w.take()
	for off := 0; off < len(frames); {
		h := parseHeader(frames[off:])
		idAt = append(idAt, off+5)
		off += frameHeaderLen + int(h.length)
	}
	return first, frames, idAt
}

func benchConn(b *testing.B, client, server func(w *wire, id uint32)) {
	var emitted, answered int
	cfg := &Config{
		Keep: func(r httpmsg.Request) (any, bool) { return nil, true },
		Emit: func(r httpmsg.Request, _ any) { emitted++; r.Release() },
	}
	if server != nil {
		cfg.Answer = func(_ any, a *httpmsg.Answer) { answered++ }
	}
	c := NewConn(cfg, testClient, testServer, false)
	cw, sw := clientWire(), serverWire()
	c.ClientData(cw.take(), t0)
	c.ServerData(sw.take(), t0)
	// The warm-up request, so that the Conn's tables are the encoder's.
	first, req, reqIDs := warmFrames(cw, client)
	c.ClientData(first, t0)
	var resp []byte
	var respIDs []int
	if server != nil {
		first, resp, respIDs = warmFrames(sw, server)
		c.ServerData(first, t0)
	}
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	id := uint32(3)
	for b.Loop() {
		c.ClientData(renumber(req, reqIDs, id), t0)
		if server != nil {
			c.ServerData(renumber(resp, respIDs, id), t0)
		}
		id += 2
	}
	if emitted <= b.N || (server != nil && answered <= b.N) {
		b.Fatalf("emitted %d, answered %d of %d", emitted, answered, b.N)
	}
	c.End()
}

func renumber(frames []byte, at []int, id uint32) []byte {
	for _, off := range at {
		binary.BigEndian.PutUint32(frames[off:], id)
	}
	return frames
}

func smallGET(w *wire, id uint32) {
	w.headers(id, true, get("/api/v1/orders/12345?expand=items",
		"user-agent", "svc-client/2.3", "accept", "application/json", "x-request-id", "3f2a9c1e-77b0-4a53")...)
}

var grpcMessage = "\x00\x00\x00\x00\x64" + strings.Repeat("m", 100)

func grpcUnary(w *wire, id uint32) {
	w.headers(id, false, ":method", "POST", ":scheme", "http", ":path", "/pkg.Orders/Get", ":authority", "orders:50051",
		"content-type", "application/grpc", "user-agent", "grpc-go/1.85.0", "te", "trailers", "grpc-timeout", "999m")
	w.data(id, true, grpcMessage)
}

func grpcAnswer(w *wire, id uint32) {
	w.headers(id, false, ":status", "200", "content-type", "application/grpc")
	w.data(id, false, grpcMessage)
	w.headers(id, true, "grpc-status", "0", "grpc-message", "")
}

// BenchmarkSmallGET is one GET of about 200 bytes of fields on a warm
// connection.
func BenchmarkSmallGET(b *testing.B) { benchConn(b, smallGET, nil) }

// BenchmarkGRPCUnary is one gRPC unary call: HEADERS and one DATA frame
// with a 100-byte message.
func BenchmarkGRPCUnary(b *testing.B) { benchConn(b, grpcUnary, nil) }

// BenchmarkGRPCUnaryAnswered adds the server's answer, headers, message
// and trailers, handed over as an *httpmsg.Answer (which the receiver
// owns, so it is allocated).
func BenchmarkGRPCUnaryAnswered(b *testing.B) { benchConn(b, grpcUnary, grpcAnswer) }

type nopSink struct{ n int }

func (s *nopSink) field(name, value []byte) { s.n += len(name) + len(value) }
func (s *nopSink) unknown()                 {}

// BenchmarkDecoder is the HPACK decoder alone on a warm block of a small
// GET's fields, and on one of fresh literals (Huffman-coded, inserted).
func BenchmarkDecoder(b *testing.B) {
	kv := get("/api/v1/orders/12345", "user-agent", "svc-client/2.3", "accept", "application/json")
	b.Run("indexed", func(b *testing.B) {
		w := newWire()
		dec := newDecoder(DefaultMaxTableSize)
		dec.decode(w.block(kv...), nil)
		block := w.block(kv...)
		var sink nopSink
		b.ReportAllocs()
		for b.Loop() {
			if err := dec.decode(block, &sink); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("literals", func(b *testing.B) {
		block := hpackBlock(kv...)
		dec := newDecoder(DefaultMaxTableSize)
		var sink nopSink
		b.ReportAllocs()
		for b.Loop() {
			if err := dec.decode(block, &sink); err != nil {
				b.Fatal(err)
			}
		}
	})
}
