package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// framing is the link layer of a capture.
type framing int

const (
	ethernet framing = iota // EN10MB; a connection may add 802.1Q tags
	sll2                    // LINUX_SLL2, as tcpdump -i any writes it today
	null                    // BSD loopback: a 4-byte address family first
)

// format is the file format of a capture.
type format int

const (
	pcapMicro format = iota // the classic pcap, microsecond timestamps
	pcapNano                // pcap with nanosecond timestamps
	pcapng                  // pcapng, one interface, nanosecond timestamps
)

// epoch is the capture time of the first packet of every synthesised file:
// fixed, so that the files and the golden output made from them never
// change from one run to the next.
var epoch = time.Date(2025, time.March, 14, 9, 26, 53, 0, time.UTC)

// step is the time between two packets unless a case waits longer.
const step = 150 * time.Microsecond

// mss is the largest payload a synthesised segment carries, as on an
// Ethernet path with TCP timestamps.
const mss = 1448

// Fixed, locally administered MAC addresses.
var (
	clientMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x01}
	serverMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x00, 0x02}
)

// capture accumulates the packets of one file in capture order.
type capture struct {
	framing framing
	now     time.Time
	ipID    uint16
	pkts    []packet
	// clientOnly drops every server-to-client packet, as a capture taken
	// where only one direction passes (asymmetric routing, a tap on one
	// fibre).
	clientOnly bool
}

// packet is one captured frame and its capture time.
type packet struct {
	t    time.Time
	data []byte
}

func newCapture(f framing) *capture { return &capture{framing: f, now: epoch} }

// wait lets d pass before the next packet.
func (c *capture) wait(d time.Duration) { c.now = c.now.Add(d) }

// conn is one TCP connection of a capture. Offsets are relative: 0 is the
// first byte after the SYN of each side.
type conn struct {
	c              *capture
	client, server netip.AddrPort
	cisn, sisn     uint32 // initial sequence numbers
	csent, ssent   int    // bytes sent so far by the client and the server
	vlans          []uint16
	family         layers.ProtocolFamily // for null framing
}

// conn returns a new connection of the capture from client to server
// ("198.18.0.1:40000" or "[fd00::1]:40000"); it writes nothing until used.
// isn seeds both initial sequence numbers, so that each connection of a
// file has its own.
func (c *capture) conn(client, server string, isn uint32) *conn {
	k := &conn{
		c: c, client: netip.MustParseAddrPort(client), server: netip.MustParseAddrPort(server),
		cisn: isn, sisn: isn*2654435761 + 97,
	}
	k.family = layers.ProtocolFamilyIPv4
	if k.client.Addr().Is6() {
		k.family = layers.ProtocolFamilyIPv6Darwin
	}
	return k
}

// open exchanges SYN, SYN+ACK and ACK.
func (k *conn) open() *conn {
	k.packet(true, k.cisn, 0, layers.TCP{SYN: true}, nil)
	k.packet(false, k.sisn, k.cisn+1, layers.TCP{SYN: true, ACK: true}, nil)
	k.packet(true, k.cisn+1, k.sisn+1, layers.TCP{ACK: true}, nil)
	return k
}

// send writes data from the client in segments of at most mss bytes.
func (k *conn) send(data []byte) {
	for len(data) > 0 {
		n := min(len(data), mss)
		k.segment(k.csent, data[:n])
		data = data[n:]
	}
}

// segment writes one client segment holding the stream bytes that start
// at offset off, whatever was sent before: retransmissions and reordering
// are made with it. The client's send offset moves to the end of it if that
// is further.
func (k *conn) segment(off int, data []byte) {
	k.packet(true, k.cisn+1+uint32(off), k.sisn+1+uint32(k.ssent), layers.TCP{ACK: true, PSH: true}, data)
	k.csent = max(k.csent, off+len(data))
}

// ack sends a pure ACK from the server for everything the client sent.
func (k *conn) ack() { k.ackUpTo(k.csent) }

// ackUpTo sends a pure ACK from the server for the client bytes before off.
func (k *conn) ackUpTo(off int) {
	k.packet(false, k.sisn+1+uint32(k.ssent), k.cisn+1+uint32(off), layers.TCP{ACK: true}, nil)
}

// reply writes data from the server, acknowledging what the client sent.
func (k *conn) reply(data string) {
	for b := []byte(data); len(b) > 0; {
		n := min(len(b), mss)
		k.packet(false, k.sisn+1+uint32(k.ssent), k.cisn+1+uint32(k.csent), layers.TCP{ACK: true, PSH: true}, b[:n])
		k.ssent += n
		b = b[n:]
	}
}

// close ends the connection from the client side: FIN, FIN+ACK, ACK.
func (k *conn) close() {
	k.packet(true, k.cisn+1+uint32(k.csent), k.sisn+1+uint32(k.ssent), layers.TCP{FIN: true, ACK: true}, nil)
	k.packet(false, k.sisn+1+uint32(k.ssent), k.cisn+2+uint32(k.csent), layers.TCP{FIN: true, ACK: true}, nil)
	k.packet(true, k.cisn+2+uint32(k.csent), k.sisn+2+uint32(k.ssent), layers.TCP{ACK: true}, nil)
}

// serverClose ends the connection from the server side, as an HTTP/1.0
// server does after its answer.
func (k *conn) serverClose() {
	k.packet(false, k.sisn+1+uint32(k.ssent), k.cisn+1+uint32(k.csent), layers.TCP{FIN: true, ACK: true}, nil)
	k.packet(true, k.cisn+1+uint32(k.csent), k.sisn+2+uint32(k.ssent), layers.TCP{FIN: true, ACK: true}, nil)
	k.packet(false, k.sisn+2+uint32(k.ssent), k.cisn+2+uint32(k.csent), layers.TCP{ACK: true}, nil)
}

// packet frames one TCP segment and appends it to the capture. fromClient
// picks the direction; tcp carries the flags, the rest is filled here.
func (k *conn) packet(fromClient bool, seq, ack uint32, tcp layers.TCP, payload []byte) {
	c := k.c
	t := c.now
	c.now = c.now.Add(step)
	if !fromClient && c.clientOnly {
		return
	}
	src, dst, srcMAC, dstMAC := k.client, k.server, clientMAC, serverMAC
	if !fromClient {
		src, dst, srcMAC, dstMAC = dst, src, dstMAC, srcMAC
	}
	tcp.SrcPort, tcp.DstPort = layers.TCPPort(src.Port()), layers.TCPPort(dst.Port())
	tcp.Seq, tcp.Ack = seq, ack
	if !tcp.ACK {
		tcp.Ack = 0
	}
	tcp.Window = 502

	var ip gopacket.NetworkLayer
	etype := layers.EthernetTypeIPv4
	if src.Addr().Is4() {
		c.ipID++
		ip = &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, Id: c.ipID,
			Flags: layers.IPv4DontFragment, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	} else {
		etype = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		panic(err)
	}
	var ls []gopacket.SerializableLayer
	switch c.framing {
	case ethernet:
		ls = append(ls, vlanLayers(srcMAC, dstMAC, k.vlans, etype)...)
	case null:
		ls = append(ls, &layers.Loopback{Family: k.family})
	}
	ls = append(ls, ip.(gopacket.SerializableLayer), &tcp, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		panic(fmt.Sprintf("serialize %v -> %v: %v", src, dst, err))
	}
	data := buf.Bytes()
	if c.framing == sll2 {
		data = append(sll2Header(etype, fromClient, srcMAC), data...)
	}
	c.pkts = append(c.pkts, packet{t: t, data: data})
}

// vlanLayers returns the Ethernet header with the given VLAN ids: one is an
// 802.1Q tag, two are an 802.1ad outer tag and an 802.1Q inner tag.
func vlanLayers(src, dst net.HardwareAddr, vlans []uint16, etype layers.EthernetType) []gopacket.SerializableLayer {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: etype}
	ls := []gopacket.SerializableLayer{eth}
	for i, id := range vlans {
		tag := &layers.Dot1Q{VLANIdentifier: id, Type: etype}
		if i == 0 {
			eth.EthernetType = layers.EthernetTypeDot1Q
			if len(vlans) > 1 {
				eth.EthernetType = layers.EthernetTypeQinQ
			}
		}
		if i < len(vlans)-1 {
			tag.Type = layers.EthernetTypeDot1Q
		}
		ls = append(ls, tag)
	}
	return ls
}

// sll2Header returns the Linux cooked v2 header that tcpdump -i any puts in
// front of a packet seen on the server's host: incoming client packets are
// PACKET_HOST, the server's own are PACKET_OUTGOING.
func sll2Header(etype layers.EthernetType, incoming bool, mac net.HardwareAddr) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], uint16(etype))
	binary.BigEndian.PutUint32(h[4:], 2) // interface index
	binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
	h[10] = 4                            // PACKET_OUTGOING
	if incoming {
		h[10] = 0 // PACKET_HOST
	}
	h[11] = byte(len(mac))
	copy(h[12:], mac)
	return h
}

func (c *capture) linkType() layers.LinkType {
	switch c.framing {
	case sll2:
		return layers.LinkTypeLinuxSLL2
	case null:
		return layers.LinkTypeNull
	}
	return layers.LinkTypeEthernet
}

// write saves the capture to path in format f.
func (c *capture) write(path string, f format) error {
	file, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(file)
	err = c.encode(bw, f)
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	return err
}

func (c *capture) encode(w io.Writer, f format) error {
	var (
		writePacket func(gopacket.CaptureInfo, []byte) error
		ng          *pcapgo.NgWriter
	)
	if f == pcapng {
		var err error
		if ng, err = newNgWriter(w, c.linkType()); err != nil {
			return err
		}
		writePacket = ng.WritePacket
	} else {
		pw := pcapgo.NewWriter(w)
		if f == pcapNano {
			pw = pcapgo.NewWriterNanos(w)
		}
		if err := pw.WriteFileHeader(262144, c.linkType()); err != nil {
			return err
		}
		writePacket = pw.WritePacket
	}
	for _, p := range c.pkts {
		ci := gopacket.CaptureInfo{Timestamp: p.t, CaptureLength: len(p.data), Length: len(p.data)}
		if err := writePacket(ci, p.data); err != nil {
			return err
		}
	}
	if ng != nil {
		return ng.Flush()
	}
	return nil
}

// newNgWriter starts a pcapng file with one interface. The section names
// no host or OS: the files are the same wherever they are made.
func newNgWriter(w io.Writer, link layers.LinkType) (*pcapgo.NgWriter, error) {
	return pcapgo.NewNgWriterInterface(w,
		pcapgo.NgInterface{Name: "eth0", LinkType: link, TimestampResolution: 9},
		pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "shadowtee mkcaptures"}})
}
