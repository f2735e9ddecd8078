package bpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/shadowtee/shadowtee/reassembly"
)

// Offsets of struct tee_event (tee.h). The per-record decode reads these
// fixed offsets instead of reflecting into the generated teeTeeEvent; a test
// checks them against that generated type, which bpf2go derives from the
// BTF of tee.h.
const (
	eventSize     = 64
	offTimestamp  = 0
	offIfindex    = 8
	offSeq        = 12
	offAck        = 16
	offLen        = 20
	offSport      = 24
	offDport      = 26
	offFamily     = 28
	offFlags      = 29
	offDir        = 30
	offSaddr      = 32
	offDaddr      = 48
	tcpFlagsKnown = 0x1f // FIN SYN RST PSH ACK, the flags reassembly knows
)

var (
	errShortRecord = errors.New("record shorter than its header says")
	errDirection   = errors.New("record with an unknown direction")
)

// decodeEvent fills seg from one ring buffer record and returns the index of
// the interface the packet was seen on. seg.Payload aliases raw. monoToWall converts
// the kernel's monotonic timestamp to wall-clock nanoseconds.
func decodeEvent(raw []byte, seg *reassembly.Segment, monoToWall int64) (int, error) {
	if len(raw) < eventSize {
		return 0, errShortRecord
	}
	n := int(binary.NativeEndian.Uint32(raw[offLen:]))
	if n > len(raw)-eventSize {
		return 0, errShortRecord
	}
	var src, dst netip.Addr
	switch raw[offFamily] {
	case 4:
		src = netip.AddrFrom4([4]byte(raw[offSaddr : offSaddr+4]))
		dst = netip.AddrFrom4([4]byte(raw[offDaddr : offDaddr+4]))
	case 6:
		src = netip.AddrFrom16([16]byte(raw[offSaddr : offSaddr+16]))
		dst = netip.AddrFrom16([16]byte(raw[offDaddr : offDaddr+16]))
	default:
		return 0, errors.New("record with an unknown address family")
	}
	switch teeTeeDir(raw[offDir]) {
	case teeTeeDirTEE_TO_SERVER:
		seg.Dir = reassembly.ToServer
	case teeTeeDirTEE_TO_CLIENT:
		seg.Dir = reassembly.ToClient
	default:
		return 0, errDirection
	}
	seg.Flow.Src = netip.AddrPortFrom(src, binary.NativeEndian.Uint16(raw[offSport:]))
	seg.Flow.Dst = netip.AddrPortFrom(dst, binary.NativeEndian.Uint16(raw[offDport:]))
	seg.Seq = binary.NativeEndian.Uint32(raw[offSeq:])
	seg.Ack = binary.NativeEndian.Uint32(raw[offAck:])
	seg.Flags = reassembly.Flags(raw[offFlags] & tcpFlagsKnown)
	seg.Payload = raw[eventSize : eventSize+n]
	seg.Time = time.Unix(0, int64(binary.NativeEndian.Uint64(raw[offTimestamp:]))+monoToWall)
	return int(binary.NativeEndian.Uint32(raw[offIfindex:])), nil
}
