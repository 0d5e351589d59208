// SPDX-License-Identifier: Apache-2.0
//
// Tandem's XDP steering program.
//
// Per received frame:
//   - Ethernet, at most one 802.1Q or 802.1ad tag, IPv4 (any IHL 5..15), UDP to `dhcp_port`;
//   - IPv4 fragments are passed to the kernel (it reassembles them; counted);
//   - the RFC 3074 bucket of the client is computed from option 61 (client identifier) if the
//     request carries it, else from chaddr[..hlen];
//   - the failover relationship of the request's scope is found from its scope key as the engine
//     selects the scope: the link it names (option 82 sub-option 5, RFC 3527, else option 118,
//     RFC 3011, when exactly 4 bytes), else giaddr (relayed) or ciaddr, in `subnet_rel` (longest
//     prefix), else the relationship of the interface's directly attached scopes
//     (`direct_rel`); a repeated option 82 or 118 (concatenated by the engine) leaves the
//     request in no relationship here;
//   - bucket marked in that relationship's bitmap of `rel_buckets` (answered by its failover
//     partner) -> XDP_DROP, counted in total and per relationship (`rel_drops`);
//   - otherwise -> XSKMAP[rx_queue_index] (AF_XDP socket of the receiving queue), with XDP_PASS
//     as the fallback when that queue has no socket;
//   - everything else -> XDP_PASS.
//
// The user-space engine stays authoritative. This program only decides to DROP when it is sure
// of the key: whenever it cannot determine the key exactly as the engine would (option overload,
// repeated or empty option 61, malformed or unterminated options within the walk bound, hlen over
// 16, a payload too short for the fixed header, a bad magic cookie, a truncated datagram) the frame
// is redirected to user space, never dropped.
//
// Every frame increments exactly one verdict counter (RUNT..REDIRECT_FAILED); every frame that
// reaches the bucket decision also increments exactly one key counter (KEY_CLIENT_ID..BAD_DHCP).
// The indices are mirrored by `NAMES` in `src/lib.rs`.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Apache-2.0";

// UDP destination port of DHCP requests. Set by the loader before the program is loaded.
volatile const __u16 dhcp_port = 67;

enum counter {
	// Verdicts: exactly one per frame.
	CNT_RUNT = 0,		 // frame ends inside the Ethernet, VLAN, IPv4 or UDP header: PASS
	CNT_NOT_IPV4 = 1,	 // EtherType (after at most one tag) is not IPv4: PASS
	CNT_BAD_IPV4 = 2,	 // IPv4 version is not 4 or IHL below 5: PASS
	CNT_NOT_UDP = 3,	 // IPv4 but not UDP: PASS
	CNT_FRAGMENT = 4,	 // a UDP fragment (MF set or non-zero offset): PASS
	CNT_OTHER_PORT = 5,	 // UDP to another port: PASS
	CNT_PARTNER_DROP = 6,	 // DHCP whose bucket the partner answers: DROP
	CNT_REDIRECT = 7,	 // DHCP redirected to the queue's AF_XDP socket: REDIRECT
	CNT_REDIRECT_FAILED = 8, // DHCP for user space but no socket on the queue: PASS
	// Key classes: exactly one per frame that got to PARTNER_DROP / REDIRECT / REDIRECT_FAILED.
	CNT_KEY_CLIENT_ID = 9, // bucket computed from option 61
	CNT_KEY_CHADDR = 10,   // bucket computed from chaddr
	CNT_KEY_UNKNOWN = 11,  // key not determinable here (see top of file): never dropped
	CNT_BAD_DHCP = 12,     // UDP payload not a DHCP message (length, cookie): never dropped
	CNT_MAX = 13,
};

// Room for counters added later without changing the map definition.
#define COUNTER_SLOTS 32

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// One 32-byte bitmap: bucket b is bit (b & 7), least significant first, of byte (b >> 3), the
// layout of the failover hash-bucket assignment. A set bit means "answered by the partner".
struct bucket_bits {
	__u8 bits[32];
};

// Failover relationships a server can run (slots of `rel_buckets` and `rel_drops`).
#define MAX_RELS 64
// "In no relationship": a scope served alone, or a key whose scope this program cannot tell.
#define REL_NONE 0xffffffff

// Per relationship slot, the buckets its partner answers (all zero: every client is ours).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_RELS);
	__type(key, __u32);
	__type(value, struct bucket_bits);
} rel_buckets SEC(".maps");

// Per relationship slot, the frames dropped as its partner's.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RELS);
	__type(key, __u32);
	__type(value, __u64);
} rel_drops SEC(".maps");

// The relationship of the interface's directly attached scopes (REL_NONE: none, or scopes of
// several relationships on one link, which only the engine tells apart).
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} direct_rel SEC(".maps");

// Scope subnets (network byte order, longest prefix wins) -> relationship slot, REL_NONE for
// scopes served alone.
struct subnet_key {
	__u32 prefixlen;
	__u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct subnet_key);
	__type(value, __u32);
} subnet_rel SEC(".maps");

// AF_XDP sockets, indexed by receive queue.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// Per-CPU scratch of the option walk. Findings live in map memory, which the verifier does not
// track, rather than in registers, so the paths through one iteration leave identical register
// states and get pruned (a walk over registers made the verifier explore every combination).
// XDP runs with bottom halves disabled, so no other run on the same CPU interleaves with a
// walk (the per-CPU counters rely on the same).
struct walk_scratch {
	__u32 done;
	__u32 seen;
	__u32 unknown;
	__u32 cid;
	// A repeated option 82 or 118: the engine concatenates them, so its scope is its call.
	__u32 link;
	// Option 82 and option 118, (value offset << 8 | length), 0 if absent.
	__u32 o82;
	__u32 o118;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct walk_scratch);
} walk_scratch SEC(".maps");

// RFC 3074 §6 mixing table.
#include "rfc3074.h"

// DHCP layout (RFC 2131 §2): fixed BOOTP header of 236 bytes, then the magic cookie.
#define DHCP_HLEN_OFF 2
#define DHCP_CHADDR_OFF 28
#define DHCP_CHADDR_LEN 16
#define DHCP_COOKIE_OFF 236
#define DHCP_OPTIONS_OFF 240

#define DHCP_CIADDR_OFF 12
#define DHCP_GIADDR_OFF 24

#define OPT_PAD 0
#define OPT_OVERLOAD 52
#define OPT_CLIENT_ID 61
#define OPT_RELAY_INFO 82
#define OPT_SUBNET_SELECTION 118
#define OPT_END 255

// Largest frame offset read. Bounds every packet offset for the verifier; a frame larger than
// this (jumbo frames in generic mode) is never dropped, only redirected with an unknown key.
#define MAX_OFF 4095
// A mask covering every offset up to MAX_OFF + 1.
#define OFF_MASK 0x1fff
// Option walk bound: options (PAD bytes included) examined before the key is declared unknown.
#define OPTION_WALK_MAX 96

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

// Hides a value from the optimiser (emits no instruction).
#define opaque(v) asm volatile("" : "+r"(v))

struct vlan_tag {
	__be16 tci;
	__be16 encap_proto;
};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline int verdict(__u32 idx, int action)
{
	count(idx);
	return action;
}

// Reads one byte at frame offset `off`; -1 if it lies past the end of the frame.
static __always_inline int byte_at(void *data, void *end, __u32 off)
{
	__u8 *p;

	if (off > MAX_OFF)
		return -1;
	p = data + off;
	if ((void *)(p + 1) > end)
		return -1;
	return *p;
}

// The two loops live in global (non-static, noinline) functions: the verifier checks a global
// function once, on its own, with unknown arguments, instead of once per path of the caller.
// That keeps verification small and independent of the parsing paths before it.

// RFC 3074 bucket of the `len` bytes at frame offset `off` (len <= 255): seed with the length,
// fold from the last byte to the first through the mixing table. -1 if any byte is missing.
__attribute__((noinline)) int tandem_hash(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 h, i;

	if (len > 255 || off > MAX_OFF)
		return -1;
	h = len;
	for (i = 0; i < 255; i++) {
		int b;

		if (i >= len)
			break;
		b = byte_at(data, end, off + len - 1 - i);
		if (b < 0)
			return -1;
		h = rfc3074_mix[(h ^ (__u32)b) & 0xff];
	}
	return h;
}

#define WALK_NO_CLIENT_ID 0
#define WALK_UNKNOWN (-1)

// Walks the DHCP options from frame offset `off` up to `lim` (the end of the UDP payload) like
// the engine does: PAD is one byte, END stops, the end of the payload without END is accepted,
// an option running past the payload is malformed. Returns (value offset << 8 | length) of the
// one non-empty option 61, WALK_NO_CLIENT_ID if there is none, or WALK_UNKNOWN if the key
// cannot be determined here (malformed, more than OPTION_WALK_MAX options, option overload,
// repeated or empty option 61).
__attribute__((noinline)) int tandem_walk_options(struct xdp_md *ctx, __u32 off, __u32 lim)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct walk_scratch *w;
	__u32 i, zero = 0;

	if (off > MAX_OFF || lim > MAX_OFF + 1)
		return WALK_UNKNOWN;
	w = bpf_map_lookup_elem(&walk_scratch, &zero);
	if (!w)
		return WALK_UNKNOWN;
	w->done = 0;
	w->seen = 0;
	w->unknown = 0;
	w->cid = 0;
	w->link = 0;
	w->o82 = 0;
	w->o118 = 0;
	for (i = 0; i < OPTION_WALK_MAX; i++) {
		int code, len;

		if (off >= lim) {
			w->done = 1;
			break;
		}
		code = byte_at(data, end, off);
		if (code < 0)
			break;
		if (code == OPT_END) {
			w->done = 1;
			break;
		}
		len = 1;
		if (code != OPT_PAD) {
			len = byte_at(data, end, off + 1);
			if (len < 0 || off + 2 + len > lim)
				break;
			if (code == OPT_OVERLOAD) {
				w->unknown = 1;
			} else if (code == OPT_RELAY_INFO) {
				if (w->o82)
					w->link = 1;
				w->o82 = ((off + 2) << 8) | len;
			} else if (code == OPT_SUBNET_SELECTION) {
				if (w->o118)
					w->link = 1;
				w->o118 = ((off + 2) << 8) | len;
			} else if (code == OPT_CLIENT_ID) {
				// A repeated option 61 is concatenated by the engine (RFC 3396); an
				// empty one is malformed.
				if (w->seen || len == 0)
					w->unknown = 1;
				w->seen = 1;
				w->cid = ((off + 2) << 8) | len;
			}
			len += 2;
		}
		// off + len <= lim <= MAX_OFF + 1 here, so the mask changes nothing. It gives `off`
		// the same known range on every path into the next iteration, which lets the
		// verifier prune them instead of exploring each path's range separately. The
		// barrier keeps clang from proving the mask redundant and removing it.
		off += len;
		opaque(off);
		off &= OFF_MASK;
	}
	if (!w->done || w->unknown)
		return WALK_UNKNOWN;
	return w->seen ? w->cid : WALK_NO_CLIENT_ID;
}

#define SUBOPT_LINK_SELECTION 5
#define SUBOPT_NONE (-1)

// Walks the relay agent sub-options of the option 82 value at frame offset `off` (`len`
// bytes) as the engine does: returns (value offset << 8 | length) of the first sub-option 5,
// or SUBOPT_NONE if there is none or a sub-option before it runs past the value (the engine
// then finds none either).
__attribute__((noinline)) int tandem_link_subopt(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 i, pos = 0;

	if (off > MAX_OFF || len > 255)
		return SUBOPT_NONE;
	for (i = 0; i < 128; i++) {
		int code, sl;

		if (pos + 2 > len)
			break;
		code = byte_at(data, end, off + pos);
		sl = byte_at(data, end, off + pos + 1);
		if (code < 0 || sl < 0 || pos + 2 + sl > len)
			break;
		if (code == SUBOPT_LINK_SELECTION)
			return ((off + pos + 2) << 8) | sl;
		pos += 2 + sl;
		pos &= 0x1ff;
	}
	return SUBOPT_NONE;
}

// Reads the four bytes at frame offset `off` as they lie (network byte order); 0 if they lie
// past the end of the frame.
static __always_inline __u32 addr_at(void *data, void *end, __u32 off)
{
	__u32 *p;

	if (off > MAX_OFF)
		return 0;
	p = data + off;
	if ((void *)(p + 1) > end)
		return 0;
	return *p;
}

// The relationship slot of the request's scope (see the top of the file), REL_NONE if it is in
// none or cannot be told here. Runs after the option walk of `client_bucket`, whose findings
// are still in the per-CPU scratch.
static __always_inline __u32 scope_rel(struct xdp_md *ctx, void *data, void *end, __u32 msg)
{
	struct subnet_key key = { .prefixlen = 32 };
	struct walk_scratch *w;
	__u32 zero = 0, gi, ci, link = 0, named = 0, *rel;
	int sub;

	w = bpf_map_lookup_elem(&walk_scratch, &zero);
	if (!w || w->link)
		return REL_NONE;
	// The link the request names (the engine's `link_selection`): sub-option 5 of option 82
	// if present (even of a wrong length, which names none), else option 118; 4 bytes only.
	sub = w->o82 ? tandem_link_subopt(ctx, w->o82 >> 8, w->o82 & 0xff) : SUBOPT_NONE;
	if (sub >= 0) {
		if ((sub & 0xff) == 4) {
			link = addr_at(data, end, (__u32)sub >> 8);
			named = 1;
		}
	} else if (w->o118 && (w->o118 & 0xff) == 4) {
		link = addr_at(data, end, w->o118 >> 8);
		named = 1;
	}
	if (named && !link)
		// 0.0.0.0, or not readable here: the engine's call.
		return REL_NONE;
	gi = addr_at(data, end, msg + DHCP_GIADDR_OFF);
	if (named || gi) {
		key.addr = named ? link : gi;
		rel = bpf_map_lookup_elem(&subnet_rel, &key);
		return rel ? *rel : REL_NONE;
	}
	ci = addr_at(data, end, msg + DHCP_CIADDR_OFF);
	if (ci) {
		key.addr = ci;
		rel = bpf_map_lookup_elem(&subnet_rel, &key);
		if (rel)
			return *rel;
	}
	rel = bpf_map_lookup_elem(&direct_rel, &zero);
	return rel ? *rel : REL_NONE;
}

// The bucket of the DHCP message at frame offset `msg` with `msg_len` bytes of UDP payload,
// or -1 with *key_counter naming why it could not be determined.
static __always_inline int client_bucket(struct xdp_md *ctx, void *data, void *end, __u32 msg,
					 __u32 msg_len, __u32 *key_counter)
{
	__u8 *c;
	int hlen, cid, bucket;

	*key_counter = CNT_BAD_DHCP;
	if (msg_len < DHCP_OPTIONS_OFF || msg > MAX_OFF)
		return -1;
	c = data + msg + DHCP_COOKIE_OFF;
	if ((void *)(c + 4) > end)
		return -1;
	if (c[0] != 0x63 || c[1] != 0x82 || c[2] != 0x53 || c[3] != 0x63)
		return -1;

	*key_counter = CNT_KEY_UNKNOWN;
	hlen = byte_at(data, end, msg + DHCP_HLEN_OFF);
	if (hlen < 0 || hlen > DHCP_CHADDR_LEN)
		return -1;
	cid = tandem_walk_options(ctx, msg + DHCP_OPTIONS_OFF, msg + msg_len);
	if (cid < 0)
		return -1;
	if (cid != WALK_NO_CLIENT_ID) {
		bucket = tandem_hash(ctx, (__u32)cid >> 8, (__u32)cid & 0xff);
		if (bucket >= 0)
			*key_counter = CNT_KEY_CLIENT_ID;
		return bucket;
	}
	bucket = tandem_hash(ctx, msg + DHCP_CHADDR_OFF, hlen);
	if (bucket >= 0)
		*key_counter = CNT_KEY_CHADDR;
	return bucket;
}

// Metadata before every redirected frame, so the worker can tell how long the frame waited in
// its socket's RX ring (`META_MAGIC` in the worker). 16 bytes: a multiple of 4, at most 32.
#define TANDEM_META_MAGIC 0x54444d31
struct tandem_meta {
	__u32 magic;
	__u32 zero;
	__u64 stamp;
};

// Stamps the frame with the time now; leaves it as it is if the driver has no metadata room.
// Built without it (TANDEM_NO_META) for kernels that refuse bpf_xdp_adjust_meta here.
static __always_inline void stamp(struct xdp_md *ctx)
{
#ifndef TANDEM_NO_META
	struct tandem_meta *m;
	void *data;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*m)))
		return;
	m = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if ((void *)(m + 1) > data)
		return;
	m->magic = TANDEM_META_MAGIC;
	m->zero = 0;
	m->stamp = bpf_ktime_get_ns();
#endif
}

SEC("xdp")
int tandem_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	struct bucket_bits *partner;
	__u32 l3 = sizeof(*eth), l4, msg, avail, udp_len, key_counter, rel;
	__u64 *drops;
	__u16 proto;
	int bucket;
	long action;

	if ((void *)(eth + 1) > end)
		return verdict(CNT_RUNT, XDP_PASS);
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_tag *tag = (void *)(eth + 1);

		if ((void *)(tag + 1) > end)
			return verdict(CNT_RUNT, XDP_PASS);
		proto = tag->encap_proto;
		l3 += sizeof(*tag);
	}
	if (proto != bpf_htons(ETH_P_IP))
		return verdict(CNT_NOT_IPV4, XDP_PASS);

	ip = data + l3;
	if ((void *)(ip + 1) > end)
		return verdict(CNT_RUNT, XDP_PASS);
	if (ip->version != 4 || ip->ihl < 5)
		return verdict(CNT_BAD_IPV4, XDP_PASS);
	if (ip->protocol != IPPROTO_UDP)
		return verdict(CNT_NOT_UDP, XDP_PASS);
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return verdict(CNT_FRAGMENT, XDP_PASS);

	l4 = l3 + ip->ihl * 4;
	udp = data + l4;
	if ((void *)(udp + 1) > end)
		return verdict(CNT_RUNT, XDP_PASS);
	if (udp->dest != bpf_htons(dhcp_port))
		return verdict(CNT_OTHER_PORT, XDP_PASS);

	// From here on the frame is DHCP for us: it goes to user space unless we are sure that
	// the partner answers it.
	msg = l4 + sizeof(*udp);
	avail = (__u32)(end - data) - msg;
	udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp) || udp_len - sizeof(*udp) > avail) {
		// Shorter than its own header, or a truncated datagram.
		key_counter = CNT_BAD_DHCP;
		bucket = -1;
	} else {
		bucket = client_bucket(ctx, data, end, msg, udp_len - sizeof(*udp), &key_counter);
	}
	count(key_counter);
	if (bucket >= 0) {
		rel = scope_rel(ctx, data, end, msg);
		partner = rel < MAX_RELS ? bpf_map_lookup_elem(&rel_buckets, &rel) : NULL;
		if (partner && (partner->bits[(bucket >> 3) & 31] >> (bucket & 7)) & 1) {
			drops = bpf_map_lookup_elem(&rel_drops, &rel);
			if (drops)
				*drops += 1;
			return verdict(CNT_PARTNER_DROP, XDP_DROP);
		}
	}

	action = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (action == XDP_REDIRECT) {
		stamp(ctx);
		return verdict(CNT_REDIRECT, XDP_REDIRECT);
	}
	return verdict(CNT_REDIRECT_FAILED, XDP_PASS);
}
