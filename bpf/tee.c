// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//go:build ignore

/*
 * tee.c copies the bytes of TCP connections to watched servers into a ring
 * buffer, for the shadowtee agent to reassemble and mirror: what clients
 * send, and, when the agent asks for answers, what those servers send back.
 *
 * It runs as a TC (TCX or clsact) classifier and only ever reads: every path
 * returns TC_ACT_UNSPEC (TCX_NEXT), so the packet continues as if the
 * program were not there, also when a copy fails. There are four programs
 * and one parser (tee_packet, inlined into each): tee_eth and tee_l3 on
 * ingress copy segments towards a watched server (TEE_TO_SERVER);
 * tee_eth_egress and tee_l3_egress, attached only for answers, copy the
 * segments that server sends (TEE_TO_CLIENT).
 *
 * Per packet:
 *   1. Find the network header: after the Ethernet header and up to two
 *      802.1Q/802.1ad tags (the _eth programs), or at offset 0 on devices
 *      without a link-layer header (the _l3 programs).
 *   2. IPv4 (options skipped, fragments counted and left alone) or IPv6
 *      (hop-by-hop, routing, destination-options and AH headers skipped).
 *   3. TCP whose server port is in the ports map and whose server address
 *      is in the destinations trie (which holds ::/0 unless the agent
 *      narrows it to pod CIDRs), with payload or with SYN, FIN or RST. The
 *      server is the destination on ingress and the source on egress. Pure
 *      ACKs never leave the kernel.
 *   4. Copy the whole payload, GRO super-packets included, into ring buffer
 *      records: up to TEE_CHUNK bytes per record, each record reserved in the
 *      smallest power-of-two size class that holds its bytes, because
 *      bpf_ringbuf_reserve needs a constant size and one 64 KiB class would
 *      waste most of the ring on small requests.
 *
 * The ring buffer is a single ordered buffer for all CPUs.
 *
 * Waking the reader. A wake-up is an irq_work and then a thread woken in
 * user space, so the program wakes the reader only when the reader has said
 * that it is about to block, in the reader_waiting word of the wake map
 * (mapped into the reader's memory, and written there with atomic stores).
 * While traffic flows the reader looks at the ring on a timer and the word
 * is 0: records go in with BPF_RB_NO_WAKEUP and cost no wake-up at all. When
 * its looks find the ring empty, the reader stores 1, looks again, and
 * blocks; the first packet copied after that clears the word and wakes it,
 * once.
 *
 * The race to get right is the reader blocking just as a record arrives.
 * The reader stores reader_waiting = 1, then (sequentially consistent: a
 * full barrier) loads the producer position, and blocks only if that shows
 * nothing to read. The program commits its records with BPF_RB_NO_WAKEUP,
 * which publishes each with an xchg on its header (a full barrier, in the
 * kernel), and only then loads reader_waiting. Each side stores, fences,
 * then loads what the other stored, so at least one sees the other: either
 * the reader finds the record (reserving advances the producer position, so
 * a record still being written counts as something to read, and the reader
 * polls again instead of blocking) or the program finds the word set and
 * wakes the reader. Both may happen; an extra wake-up is harmless.
 *
 * The wake-up cannot ride on the record's own commit (the word is read after
 * it), so it goes through a second, small ring buffer, the doorbell: the
 * program reserves a one-word record there and discards it with
 * BPF_RB_FORCE_WAKEUP, and the reader, which blocks on the doorbell, drops
 * what it finds there when it wakes. Ringing a ring of its own cannot fail
 * for want of room in the events ring, where a full ring with the reader
 * asleep would never drain. The word is cleared with a plain store before
 * the doorbell rings, not an atomic exchange (BPF atomics need Linux 5.12,
 * the ring buffer 5.8): two CPUs may both see 1 and both ring, which costs a
 * spurious wake-up, and the CPU that clears the word always rings after, so
 * a reader that stored 1 again in between is woken all the same. The
 * doorbell holds 4096 rings, more than there are CPUs to ring it between
 * two looks of the reader.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "tee.h"

#define TC_ACT_UNSPEC (-1)

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_TCP 6

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

/* A load or store the compiler must emit once, as written. */
#define READ_ONCE_U32(x) (*(volatile __u32 *)&(x))
#define WRITE_ONCE_U32(x, v) (*(volatile __u32 *)&(x) = (v))

char __license[] SEC("license") = "Dual BSD/GPL";

/* Not read by the program: these keep struct tee_event and the enums in the
 * BTF, from which bpf2go generates their Go twins (see events.go). */
const volatile struct tee_event event_layout = {};
const volatile enum tee_counter counter_count = TEE_COUNTER_MAX;
const volatile enum tee_dir dir_values = TEE_TO_CLIENT;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the loader */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TEE_MAX_PORTS);
	__type(key, __u16); /* server port, host order */
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, TEE_MAX_DESTINATIONS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tee_dst_key);
	__type(value, __u8);
} destinations SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tee_counters);
} counters SEC(".maps");

/* The reader blocks on this ring; its records are empty and discarded. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TEE_DOORBELL_BYTES);
} doorbell SEC(".maps");

/* The reader maps this array into its memory (BPF_F_MMAPABLE, Linux 5.5). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct tee_wake);
} wake SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

struct ipv6_hdr {
	__be32 ver_tc_flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct tcp_hdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res; /* data offset in the high nibble */
	__u8 flags;
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

static __always_inline void count(struct tee_counters *c, enum tee_counter i, __u64 n)
{
	if (c)
		c->v[i] += n;
}

/*
 * wake_reader rings the doorbell if the reader is blocked or about to block.
 * It runs after the packet's records are committed (see "Waking the reader"
 * above for why that order is safe). When the doorbell has no room, the word
 * stays set and the next packet rings.
 */
static __always_inline void wake_reader(struct tee_counters *c)
{
	__u32 zero = 0;
	struct tee_wake *w = bpf_map_lookup_elem(&wake, &zero);
	void *e;

	if (!w || !READ_ONCE_U32(w->reader_waiting))
		return;
	e = bpf_ringbuf_reserve(&doorbell, sizeof(__u64), 0);
	if (!e) {
		count(c, TEE_WAKEUP_LOST, 1);
		return;
	}
	WRITE_ONCE_U32(w->reader_waiting, 0);
	bpf_ringbuf_discard(e, BPF_RB_FORCE_WAKEUP);
	count(c, TEE_WAKEUP, 1);
}

/*
 * DEFINE_EMIT(SZ) defines emit_SZ, which copies len (1..SZ) payload bytes
 * from offset off into a record of the SZ size class. It returns the counter
 * to blame on failure, or TEE_COUNTER_MAX on success.
 */
#define DEFINE_EMIT(SZ)                                                              \
	static __always_inline enum tee_counter emit_##SZ(struct __sk_buff *skb,     \
							  const struct tee_event *h, \
							  __u64 off, __u64 len)      \
	{                                                                            \
		struct tee_event *e;                                                 \
		e = bpf_ringbuf_reserve(&events, sizeof(*e) + SZ, 0);                \
		if (!e)                                                              \
			return TEE_DROP_RING_FULL;                                   \
		__builtin_memcpy(e, h, sizeof(*e));                                  \
		e->len = len;                                                        \
		/* The verifier needs 1 <= len <= SZ proven on this register. */     \
		barrier_var(len);                                                    \
		if (len == 0 || len > SZ ||                                          \
		    bpf_skb_load_bytes(skb, off, (void *)(e + 1), len) < 0) {        \
			bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);                    \
			return TEE_DROP_LOAD;                                        \
		}                                                                    \
		bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);                             \
		return TEE_COUNTER_MAX;                                              \
	}

DEFINE_EMIT(256)
DEFINE_EMIT(512)
DEFINE_EMIT(1024)
DEFINE_EMIT(2048)
DEFINE_EMIT(4096)
DEFINE_EMIT(8192)
DEFINE_EMIT(16384)
DEFINE_EMIT(32768)
DEFINE_EMIT(65536)

/* emit_chunk copies 1..TEE_CHUNK bytes in the smallest class that holds them. */
static __always_inline enum tee_counter emit_chunk(struct __sk_buff *skb, const struct tee_event *h,
						   __u64 off, __u64 len)
{
	if (len <= 256)
		return emit_256(skb, h, off, len);
	if (len <= 512)
		return emit_512(skb, h, off, len);
	if (len <= 1024)
		return emit_1024(skb, h, off, len);
	if (len <= 2048)
		return emit_2048(skb, h, off, len);
	if (len <= 4096)
		return emit_4096(skb, h, off, len);
	if (len <= 8192)
		return emit_8192(skb, h, off, len);
	if (len <= 16384)
		return emit_16384(skb, h, off, len);
	if (len <= 32768)
		return emit_32768(skb, h, off, len);
	return emit_65536(skb, h, off, len);
}

/* emit_empty sends a header-only record for SYN, FIN or RST without payload. */
static __always_inline enum tee_counter emit_empty(const struct tee_event *h)
{
	struct tee_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return TEE_DROP_RING_FULL;
	__builtin_memcpy(e, h, sizeof(*e));
	e->len = 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return TEE_COUNTER_MAX;
}

/*
 * copy_payload sends the payload [off, off+len) as records of at most
 * TEE_CHUNK bytes. Only the first record keeps SYN and only the last keeps
 * FIN and RST, so the reader sees the flags where the bytes put them.
 */
static __always_inline void copy_payload(struct __sk_buff *skb, struct tee_counters *c,
					 struct tee_event *h, __u32 off, __u32 len)
{
	__u8 flags = h->tcp_flags;
	enum tee_counter err;
	__u32 sent = 0;

	if (len == 0) {
		err = emit_empty(h);
		goto out;
	}
	if (len > TEE_MAX_PAYLOAD) {
		count(c, TEE_TRUNCATED, 1);
		len = TEE_MAX_PAYLOAD;
	}

	h->tcp_flags = flags & ~(TCP_FIN | TCP_RST);
	for (int i = 0; i < TEE_MAX_PAYLOAD / TEE_CHUNK - 1; i++) {
		if (len - sent <= TEE_CHUNK)
			break;
		err = emit_65536(skb, h, off + sent, TEE_CHUNK);
		if (err != TEE_COUNTER_MAX)
			goto out;
		h->seq += TEE_CHUNK;
		h->tcp_flags &= ~TCP_SYN;
		sent += TEE_CHUNK;
	}
	h->tcp_flags |= flags & (TCP_FIN | TCP_RST);
	err = emit_chunk(skb, h, off + sent, len - sent);
out:
	/* A bare SYN opens a connection and carries nothing to mirror: it
	 * waits in the ring for the segment that follows. Ringing for it would
	 * wake the reader, which then polls on its timer and finds the request
	 * a whole poll interval later. */
	if (len > 0 || !(flags & TCP_SYN))
		wake_reader(c);
	if (err != TEE_COUNTER_MAX) {
		count(c, err, 1);
		return;
	}
	count(c, TEE_COPIED, 1);
	count(c, TEE_COPIED_BYTES, len);
}

/* watched_server looks the server's address up in the trie: the destination
 * of a segment towards the server, the source of one from it. */
static __always_inline int watched_server(const struct tee_event *h, enum tee_dir dir)
{
	struct tee_dst_key key = {.prefixlen = 128};
	const __u8 *addr = dir == TEE_TO_CLIENT ? h->saddr : h->daddr;

	if (h->family == 4) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], addr, 4);
	} else {
		__builtin_memcpy(key.addr, addr, 16);
	}
	return bpf_map_lookup_elem(&destinations, &key) != NULL;
}

/* tcp_segment handles the TCP header at l4 of a packet whose IP datagram
 * ends at ip_end; h already holds the addresses. */
static __always_inline void tcp_segment(struct __sk_buff *skb, struct tee_counters *c,
					struct tee_event *h, __u32 l4, __u32 ip_end,
					enum tee_dir dir)
{
	struct tcp_hdr tcp;
	__u16 port;
	__u32 doff, len;

	if (bpf_skb_load_bytes(skb, l4, &tcp, sizeof(tcp)) < 0)
		return;
	port = bpf_ntohs(dir == TEE_TO_CLIENT ? tcp.source : tcp.dest);
	if (!bpf_map_lookup_elem(&ports, &port))
		return;
	if (!watched_server(h, dir)) {
		count(c, TEE_OTHER_DST, 1);
		return;
	}
	count(c, TEE_MATCHED, 1);

	doff = (tcp.doff_res >> 4) * 4;
	if (doff < sizeof(tcp))
		return;
	if (ip_end > skb->len)
		ip_end = skb->len;
	len = 0;
	if (ip_end > l4 + doff)
		len = ip_end - (l4 + doff);
	if (len == 0 && !(tcp.flags & (TCP_SYN | TCP_FIN | TCP_RST)))
		return;

	h->ts_ns = bpf_ktime_get_ns();
	h->ifindex = skb->ifindex;
	h->sport = bpf_ntohs(tcp.source);
	h->dport = bpf_ntohs(tcp.dest);
	h->seq = bpf_ntohl(tcp.seq);
	h->ack = bpf_ntohl(tcp.ack_seq);
	h->tcp_flags = tcp.flags;
	h->dir = dir;
	copy_payload(skb, c, h, l4 + doff, len);
}

static __always_inline void ipv4_packet(struct __sk_buff *skb, struct tee_counters *c, __u32 off,
					enum tee_dir dir)
{
	struct tee_event h = {};
	struct ipv4_hdr ip;
	__u32 ihl, ip_end;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return;
	if ((ip.ver_ihl >> 4) != 4 || ip.protocol != IPPROTO_TCP)
		return;
	ihl = (ip.ver_ihl & 0x0F) * 4;
	if (ihl < sizeof(ip))
		return;
	if (ip.frag_off & bpf_htons(0x3FFF)) { /* MF set or a non-zero offset */
		count(c, TEE_FRAGMENT, 1);
		return;
	}
	/* A GRO or BIG TCP packet may carry tot_len 0; its end is the skb's. */
	ip_end = ip.tot_len ? off + bpf_ntohs(ip.tot_len) : skb->len;

	h.family = 4;
	__builtin_memcpy(h.saddr, &ip.saddr, 4);
	__builtin_memcpy(h.daddr, &ip.daddr, 4);
	tcp_segment(skb, c, &h, off + ihl, ip_end, dir);
}

static __always_inline void ipv6_packet(struct __sk_buff *skb, struct tee_counters *c, __u32 off,
					enum tee_dir dir)
{
	struct tee_event h = {};
	struct ipv6_opt_hdr opt;
	struct ipv6_hdr ip;
	__u32 ip_end, l4;
	__u8 next;

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
		return;
	if ((bpf_ntohl(ip.ver_tc_flow) >> 28) != 6)
		return;
	ip_end = ip.payload_len ? off + sizeof(ip) + bpf_ntohs(ip.payload_len) : skb->len;
	l4 = off + sizeof(ip);
	next = ip.nexthdr;

	for (int i = 0; i < 4; i++) {
		if (next == IPPROTO_TCP)
			break;
		if (next == 44) { /* fragment header */
			count(c, TEE_FRAGMENT, 1);
			return;
		}
		if (next != 0 && next != 43 && next != 60 && next != 51)
			return; /* not TCP, or a header we do not walk */
		if (bpf_skb_load_bytes(skb, l4, &opt, sizeof(opt)) < 0)
			return;
		l4 += next == 51 ? (opt.hdrlen + 2) * 4 : (opt.hdrlen + 1) * 8;
		next = opt.nexthdr;
	}
	if (next != IPPROTO_TCP)
		return;

	h.family = 6;
	__builtin_memcpy(h.saddr, ip.saddr, 16);
	__builtin_memcpy(h.daddr, ip.daddr, 16);
	tcp_segment(skb, c, &h, l4, ip_end, dir);
}

/*
 * tee_packet is the one parser behind all four programs. ethernet (0 or 1) says
 * whether the packet starts with an Ethernet header (else with the IP
 * header, whose protocol skb->protocol gives); dir says which hook runs it.
 * Both are constants where it is inlined.
 */
static __always_inline int tee_packet(struct __sk_buff *skb, int ethernet, enum tee_dir dir)
{
	__u32 zero = 0;
	struct tee_counters *c = bpf_map_lookup_elem(&counters, &zero);
	struct vlan_hdr vlan;
	__u32 off = 0;
	__be16 proto = skb->protocol;

	count(c, TEE_SEEN, 1);
	if (ethernet) {
		off = ETH_HLEN;
		if (bpf_skb_load_bytes(skb, 12, &proto, sizeof(proto)) < 0)
			return TC_ACT_UNSPEC;
		for (int i = 0; i < 2; i++) {
			if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
				break;
			if (bpf_skb_load_bytes(skb, off, &vlan, sizeof(vlan)) < 0)
				return TC_ACT_UNSPEC;
			proto = vlan.proto;
			off += sizeof(vlan);
		}
	}
	if (proto == bpf_htons(ETH_P_IP))
		ipv4_packet(skb, c, off, dir);
	else if (proto == bpf_htons(ETH_P_IPV6))
		ipv6_packet(skb, c, off, dir);
	return TC_ACT_UNSPEC;
}

/* tee_eth is for the ingress of devices with an Ethernet header (and
 * loopback): segments towards the watched servers. */
SEC("tc")
int tee_eth(struct __sk_buff *skb)
{
	return tee_packet(skb, 1, TEE_TO_SERVER);
}

/* tee_l3 is for the ingress of devices without a link-layer header (tun,
 * WireGuard, IP tunnels): the packet starts with the IP header. */
SEC("tc")
int tee_l3(struct __sk_buff *skb)
{
	return tee_packet(skb, 0, TEE_TO_SERVER);
}

/* tee_eth_egress is tee_eth for the egress hook: the servers' answers. */
SEC("tc")
int tee_eth_egress(struct __sk_buff *skb)
{
	return tee_packet(skb, 1, TEE_TO_CLIENT);
}

/* tee_l3_egress is tee_l3 for the egress hook: the servers' answers. */
SEC("tc")
int tee_l3_egress(struct __sk_buff *skb)
{
	return tee_packet(skb, 0, TEE_TO_CLIENT);
}
