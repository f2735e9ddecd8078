package reassembly_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/shadowtee/shadowtee/reassembly"
)

type printStream struct{ flow reassembly.Flow }

func (s printStream) Data(b []byte, _ time.Time) { fmt.Printf("%v: %q\n", s.flow, b) }
func (s printStream) Gap()                       { fmt.Printf("%v: gap\n", s.flow) }
func (s printStream) End()                       { fmt.Printf("%v: end\n", s.flow) }

func ExampleAssembler() {
	a := reassembly.New(reassembly.Config{
		NewStream: func(first *reassembly.Segment, midStream bool) reassembly.Stream {
			return printStream{first.Flow}
		},
	})
	defer a.Close()

	flow := reassembly.Flow{
		Src: netip.MustParseAddrPort("192.0.2.1:50000"),
		Dst: netip.MustParseAddrPort("192.0.2.2:80"),
	}
	now := time.Now()
	a.Add(&reassembly.Segment{Flow: flow, Seq: 1000, Flags: reassembly.SYN, Time: now})
	// The second half of the request overtakes the first.
	a.Add(&reassembly.Segment{Flow: flow, Seq: 1008, Flags: reassembly.ACK | reassembly.FIN, Payload: []byte("HTTP/1.1\r\n\r\n"), Time: now})
	a.Add(&reassembly.Segment{Flow: flow, Seq: 1001, Flags: reassembly.ACK, Payload: []byte("GET /x "), Time: now})
	// Output:
	// 192.0.2.1:50000 -> 192.0.2.2:80: "GET /x "
	// 192.0.2.1:50000 -> 192.0.2.2:80: "HTTP/1.1\r\n\r\n"
	// 192.0.2.1:50000 -> 192.0.2.2:80: end
}
