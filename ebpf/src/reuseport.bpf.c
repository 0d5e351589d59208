// SPDX-License-Identifier: Apache-2.0
//
// Tandem's SO_REUSEPORT steering program, for the UDP backend with several workers.
//
// Every worker has one socket per interface, all bound to the DHCP server port with
// SO_REUSEPORT (and SO_BINDTODEVICE: the sockets of one interface form one reuseport group).
// The kernel would pick a socket by hashing the 4-tuple, but DHCP traffic has almost no 4-tuple
// diversity (every broadcast comes from 0.0.0.0:68, every relayed request of one relay from the
// same address), so one worker would get nearly everything. This program picks the socket of
// the worker that owns the client instead: the RFC 3074 bucket of option 61 (client
// identifier) if the request carries it, else of chaddr[..hlen] (as the engine and the XDP
// program compute it), bucket b -> worker b % `workers` -> `socks[worker]`.
//
// The reuseport program only runs for datagrams the kernel delivers to one socket (unicast:
// relayed requests, renewals). A broadcast reaches every socket of the group, so each socket
// also carries the socket filter `tandem_sockfilter`, which keeps only its own worker's
// clients (global `me`): for broadcasts as for unicast, exactly one worker sees each request.
//
// A datagram whose key cannot be determined here exactly as the engine would (bad cookie,
// option overload, repeated or empty option 61, malformed options, more than OPTION_WALK_MAX
// options, more than BUF_LEN bytes of payload before the options end) goes to worker 0 (both
// programs agree on it), which hands it to its owner in user space if the engine finds one.
// Nothing is dropped that no worker sees.
//
// One instance of the object is loaded per socket (with its `me`); the reuseport program of
// worker 0's instance is attached to the interface's group and its `socks` map lists the
// group. Reuseport verdicts (one per unicast datagram) and filter verdicts (one per datagram
// and socket) count in `counters` (`enum counter`, mirrored by `REUSEPORT_NAMES` in
// src/reuseport.rs).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Apache-2.0";

// Number of workers (sockets in `socks`), and the worker whose socket this instance filters.
// Set by the loader before the program is loaded.
volatile const __u32 workers = 1;
volatile const __u32 me = 0;

enum counter {
	// Reuseport verdicts.
	CNT_STEERED = 0,   // socket of the owning worker selected
	CNT_UNKNOWN = 1,   // key not determinable here: worker 0's socket selected
	CNT_NOT_DHCP = 2,  // shorter than a DHCP message or bad magic cookie: worker 0's socket
	CNT_NO_SOCKET = 3, // the chosen slot in `socks` is empty (worker gone): kernel's choice
	// Socket filter verdicts.
	CNT_ACCEPTED = 4, // this worker's client (or worker 0 and no key): kept
	CNT_OTHERS = 5,	  // another worker's client: left to that worker's socket
	CNT_MAX = 6,
};

#define COUNTER_SLOTS 8

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTER_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Worker k's socket of this interface at index k.
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} socks SEC(".maps");

// Payload bytes copied and examined (a power of two; offsets are masked with BUF_LEN - 1).
#define BUF_LEN 2048
#define BUF_MASK (BUF_LEN - 1)

// Per-CPU copy of the datagram's payload and the option walk's findings. The findings live in
// map memory so that the paths through one iteration of the walk leave the same register
// state (the verifier prunes them instead of exploring every combination). Socket lookup runs
// in softirq context, so no other run on the same CPU interleaves with one.
struct scratch {
	__u8 buf[BUF_LEN];
	__u32 done;
	__u32 seen;
	__u32 unknown;
	__u32 cid_off;
	__u32 cid_len;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

// RFC 3074 §6 mixing table.
#include "rfc3074.h"

#define UDP_HLEN 8
#define DHCP_HLEN_OFF 2
#define DHCP_CHADDR_OFF 28
#define DHCP_CHADDR_LEN 16
#define DHCP_COOKIE_OFF 236
#define DHCP_OPTIONS_OFF 240

#define OPT_PAD 0
#define OPT_OVERLOAD 52
#define OPT_CLIENT_ID 61
#define OPT_END 255

// Options (PAD bytes included) examined before the key is declared unknown.
#define OPTION_WALK_MAX 96

// Hides a value from the optimiser (emits no instruction).
#define opaque(v) asm volatile("" : "+r"(v))

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

// RFC 3074 bucket of the `len` bytes at payload offset `off` of the copy `n` bytes long: seed
// with the length, fold from the last byte to the first through the mixing table. -1 if a
// byte lies past the copy.
static __always_inline int hash_bytes(struct scratch *s, __u32 off, __u32 len, __u32 n)
{
	__u32 h = len, i;

	if (len > 255 || off + len > n)
		return -1;
	for (i = 0; i < 255; i++) {
		if (i >= len)
			break;
		h = rfc3074_mix[(h ^ s->buf[(off + len - 1 - i) & BUF_MASK]) & 0xff];
	}
	return h;
}

// Walks the options of the copy (n bytes, the whole payload when `whole`) as the engine does:
// PAD is one byte, END stops, the end of the payload without END is accepted, an option
// running past the payload is malformed. Findings go to the scratch fields.
static __always_inline void walk_options(struct scratch *s, __u32 n, __u32 whole)
{
	__u32 off = DHCP_OPTIONS_OFF, i;

	s->done = 0;
	s->seen = 0;
	s->unknown = 0;
	s->cid_off = 0;
	s->cid_len = 0;
	for (i = 0; i < OPTION_WALK_MAX; i++) {
		__u32 code, len;

		if (off >= n) {
			// The end of the payload ends the options; the end of a shortened copy
			// does not tell.
			if (whole)
				s->done = 1;
			break;
		}
		code = s->buf[off & BUF_MASK];
		if (code == OPT_END) {
			s->done = 1;
			break;
		}
		len = 1;
		if (code != OPT_PAD) {
			if (off + 1 >= n)
				break;
			len = s->buf[(off + 1) & BUF_MASK];
			if (off + 2 + len > n)
				break;
			if (code == OPT_OVERLOAD) {
				s->unknown = 1;
			} else if (code == OPT_CLIENT_ID) {
				// A repeated option 61 is concatenated by the engine (RFC 3396); an
				// empty one is malformed.
				if (s->seen || len == 0)
					s->unknown = 1;
				s->seen = 1;
				s->cid_off = off + 2;
				s->cid_len = len;
			}
			len += 2;
		}
		off += len;
		opaque(off);
		off &= (BUF_LEN * 2 - 1);
	}
}

#define KEY_NOT_DHCP (-2)
#define KEY_UNKNOWN (-1)

// The RFC 3074 bucket of the datagram's client (0..255), or KEY_UNKNOWN / KEY_NOT_DHCP. `ctx`
// is the program's context (its bytes start at the UDP header), `total` its length.
static __always_inline int client_key(void *ctx, __u32 total)
{
	struct scratch *s;
	__u32 zero = 0, n, whole, hlen;

	if (total < UDP_HLEN + DHCP_OPTIONS_OFF)
		return KEY_NOT_DHCP;
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return KEY_UNKNOWN;
	n = total - UDP_HLEN;
	whole = 1;
	if (n > BUF_LEN - 1) {
		n = BUF_LEN - 1;
		whole = 0;
	}
	n &= BUF_MASK;
	if (n < DHCP_OPTIONS_OFF || bpf_skb_load_bytes(ctx, UDP_HLEN, s->buf, n) < 0)
		return KEY_UNKNOWN;
	if (s->buf[DHCP_COOKIE_OFF] != 0x63 || s->buf[DHCP_COOKIE_OFF + 1] != 0x82 ||
	    s->buf[DHCP_COOKIE_OFF + 2] != 0x53 || s->buf[DHCP_COOKIE_OFF + 3] != 0x63)
		return KEY_NOT_DHCP;
	hlen = s->buf[DHCP_HLEN_OFF];
	walk_options(s, n, whole);
	if (!s->done || s->unknown || hlen > DHCP_CHADDR_LEN)
		return KEY_UNKNOWN;
	if (s->seen)
		return hash_bytes(s, s->cid_off & BUF_MASK, s->cid_len & 0xff, n);
	return hash_bytes(s, DHCP_CHADDR_OFF, hlen, n);
}

// The worker a datagram with `key` belongs to: its bucket's owner, worker 0 without a key.
static __always_inline __u32 worker_of(int key)
{
	if (key < 0 || workers == 0)
		return 0;
	return (__u32)key % workers;
}

SEC("sk_reuseport")
int tandem_reuseport(struct sk_reuseport_md *md)
{
	// md->len counts from the UDP header (the kernel has trimmed the datagram to its length).
	int key = client_key(md, md->len);
	__u32 worker = worker_of(key);

	if (bpf_sk_select_reuseport(md, &socks, &worker, 0) < 0) {
		count(CNT_NO_SOCKET);
		return SK_PASS;
	}
	count(key >= 0 ? CNT_STEERED : key == KEY_NOT_DHCP ? CNT_NOT_DHCP : CNT_UNKNOWN);
	return SK_PASS;
}

SEC("socket")
int tandem_sockfilter(struct __sk_buff *skb)
{
	// A UDP socket's filter sees the datagram from its UDP header.
	__u32 len = skb->len;

	if (worker_of(client_key(skb, len)) != me) {
		count(CNT_OTHERS);
		return 0;
	}
	count(CNT_ACCEPTED);
	return len;
}
