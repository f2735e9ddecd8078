/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * tee.h is the one contract between the BPF program (tee.c) and the Go
 * agent (bpf/events.go, bpf/reader.go): the layout of a copied segment, the
 * names of the counters and the word through which the reader asks to be
 * woken. Change it only together with both sides; the Go tests check the
 * offsets against the BTF that bpf2go generates from this file.
 */
#ifndef SHADOWTEE_TEE_H
#define SHADOWTEE_TEE_H

#include <linux/types.h>

/* Maximum number of watched TCP server ports. */
#define TEE_MAX_PORTS 64

/* Maximum number of server prefixes (pod CIDRs) in the filter. */
#define TEE_MAX_DESTINATIONS 1024

/* Largest payload copied in one record; bigger payloads (GRO and BIG TCP
 * super-packets) are cut into records of at most this many bytes. */
#define TEE_CHUNK 65536

/* Largest payload copied from one packet. BIG TCP can build packets larger
 * than 64 KiB; anything past this is counted as truncated. */
#define TEE_MAX_PAYLOAD (8 * TEE_CHUNK)

/*
 * struct tee_event heads every ring buffer record. len payload bytes follow
 * it; the record itself may be longer (records are reserved in size classes),
 * so readers must take the payload length from here, never from the record.
 */
struct tee_event {
	__u64 ts_ns;     /* bpf_ktime_get_ns() when the packet was seen */
	__u32 ifindex;   /* interface the packet arrived on */
	__u32 seq;       /* TCP sequence number of the first payload byte, host order */
	__u32 ack;       /* TCP acknowledgment number, host order */
	__u32 len;       /* payload bytes following this header */
	__u16 sport;     /* TCP source port, host order */
	__u16 dport;     /* TCP destination port, host order */
	__u8 family;     /* 4 or 6 */
	__u8 tcp_flags;  /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 ... */
	__u8 dir;        /* enum tee_dir: which side sent the segment */
	__u8 _pad;
	__u8 saddr[16];  /* IPv4 addresses use the first 4 bytes */
	__u8 daddr[16];
};

/*
 * enum tee_dir says which hook copied a segment. Ingress copies what clients
 * send to a watched server (the destination port is watched); egress, only
 * when the agent asks for answers, copies what that server sends back (the
 * source port is watched). The values are reassembly.ToServer and
 * reassembly.ToClient.
 */
enum tee_dir {
	TEE_TO_SERVER = 0,
	TEE_TO_CLIENT = 1,
};

/* Size of the doorbell ring buffer, on which the reader blocks: 4096 rings
 * of 16 bytes. A power of two and a multiple of the page size. */
#define TEE_DOORBELL_BYTES (64 << 10)

/*
 * struct tee_wake is the single value of the wake map, which the reader maps
 * into its memory. The reader sets reader_waiting to 1 just before it blocks
 * on the doorbell ring; the program clears it and rings the doorbell after
 * the next packet's records. See "Waking the reader" in tee.c.
 */
struct tee_wake {
	__u32 reader_waiting;
};

/*
 * struct tee_dst_key is a key of the destinations LPM trie: an IPv6 address,
 * or an IPv4 address as ::ffff:a.b.c.d with 96 added to its prefix length.
 */
struct tee_dst_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* enum tee_counter indexes struct tee_counters.v. */
enum tee_counter {
	TEE_SEEN = 0,       /* packets the program ran on */
	TEE_MATCHED,        /* TCP segments of a watched port (destination on ingress, source on egress) */
	TEE_COPIED,         /* matched segments copied whole to the ring buffer */
	TEE_COPIED_BYTES,   /* payload bytes copied */
	TEE_DROP_RING_FULL, /* matched segments lost: no room in the ring buffer */
	TEE_DROP_LOAD,      /* matched segments lost: payload could not be read */
	TEE_TRUNCATED,      /* segments with more than TEE_MAX_PAYLOAD bytes (the tail is lost) */
	TEE_FRAGMENT,       /* IP fragments, which are not followed */
	TEE_OTHER_DST,      /* segments of a watched port but not of a watched server address */
	TEE_WAKEUP,         /* records that woke the blocked reader (BPF_RB_FORCE_WAKEUP) */
	TEE_WAKEUP_LOST,    /* wake-ups that found no room for their record; the next record retries */
	TEE_COUNTER_MAX,
};

/* struct tee_counters is the single value of the per-CPU counters map. */
struct tee_counters {
	__u64 v[TEE_COUNTER_MAX];
};

#endif
