/*
 * flowtable.p4: the "hardware" of the Linux netfilter flowtable (P4_16, v1model, BMv2).
 *
 * Offloaded flows live in two exact-match tables, flow_v4 and flow_v6, keyed like the kernel's
 * flow tuple (ingress port, addresses, L4 protocol, L4 ports, and up to two L2 encapsulations:
 * 802.1Q/802.1ad tags, a PPPoE session). A hit pops the ingress encapsulation, pushes the egress
 * one, rewrites MACs, applies NAT (the controller always passes post-NAT values), decrements
 * TTL / hop limit and forwards;
 * TCP/UDP checksums are updated incrementally as the kernel's NAT does (RFC 1624), the IPv4
 * header checksum is recomputed in FtComputeChecksum. Everything else goes to the controller as
 * a packet_in with the ingress port and a reason, never rewritten, through a per-reason meter
 * (control-plane policing): what exceeds the rate the controller configured is dropped in the
 * switch and counted. Frames from the CPU port carry a packet_out header naming the egress port
 * and are sent there unchanged.
 *
 * The names of controls, tables, keys, actions, action parameters, counters and controller
 * headers are a contract with the controller (p4info); see README.md before renaming anything.
 * Written against v1model.p4 with plain constructs only: every decision is in an apply block,
 * actions are straight-line assignments.
 */

#include <core.p4>
#include <v1model.p4>

/* The CPU port as passed to simple_switch_grpc --cpu-port (and `p4ft softswitch --cpu-port`). */
const bit<9> CPU_PORT = 255;
/* Highest port a packet_out may name: 511 is BMv2's drop port. */
const bit<16> MAX_DATA_PORT = 510;

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<16> ETHERTYPE_IPV6 = 0x86dd;
const bit<16> ETHERTYPE_VLAN = 0x8100;            /* 802.1Q C-tag */
const bit<16> ETHERTYPE_QINQ = 0x88a8;            /* 802.1ad S-tag */
const bit<16> ETHERTYPE_PPPOE_DISCOVERY = 0x8863;
const bit<16> ETHERTYPE_PPPOE_SESSION = 0x8864;
const bit<16> PPP_IPV4 = 0x0021;
const bit<16> PPP_IPV6 = 0x0057;
const bit<16> PPP_PROTOCOL_BYTES = 2;             /* the PPP protocol field, counted in PPPoE length */
const bit<8>  IP_PROTO_TCP = 6;
const bit<8>  IP_PROTO_UDP = 17;
const bit<8>  TCP_FLAG_FIN = 0x01;
const bit<8>  TCP_FLAG_RST = 0x04;
const bit<16> IPV6_HEADER_BYTES = 40;

/* Punt reasons: exactly ndo/api.py PuntReason. 0 means "not punted". */
const bit<8> PUNT_NONE = 0;
const bit<8> PUNT_MISS = 1;
const bit<8> PUNT_TCP_FIN_RST = 2;
const bit<8> PUNT_TTL = 3;
const bit<8> PUNT_IPV4_FRAG_OR_OPTIONS = 4;
const bit<8> PUNT_IPV6_EXT_HEADER = 5;
const bit<8> PUNT_MTU = 6;
const bit<8> PUNT_NON_IP = 7;
const bit<8> PUNT_NOT_TCP_UDP = 8;
const bit<8> PUNT_PPPOE_DISCOVERY = 9;      /* EtherType 0x8863: pppd's business */
const bit<8> PUNT_PPP_NOT_IP = 10;          /* a PPPoE session frame carrying LCP, IPCP, ... */
const bit<8> PUNT_ENCAP_UNSUPPORTED = 11;   /* more than two encapsulations, or an inner S-tag */
/* Meter cells and drop counters, one per punt reason (index = reason; 0 unused). */
const bit<32> PUNT_REASONS = 16;
/* execute_meter's color for "over the rate" (V1MODEL_METER_COLOR_RED in v1model.p4). */
const bit<2> METER_RED = 2;

/* ------------------------------------------------------------------------------------------ */
/* Incremental checksum update (RFC 1624 eqn 3), as the kernel's inet_proto_csum_replace*:      */
/* a rewrite adds ~old + new for every 16-bit word it changes; the checksum becomes             */
/* ~(~HC + that sum). A packet that arrived with a wrong checksum leaves with a wrong one.      */

/* ~old + now for one 16-bit word. */
bit<32> replace16(in bit<16> old, in bit<16> now) {
    return (bit<32>) (~old) + (bit<32>) now;
}

bit<32> replace32(in bit<32> old, in bit<32> now) {
    return replace16(old[31:16], now[31:16]) + replace16(old[15:0], now[15:0]);
}

bit<32> replace128(in bit<128> old, in bit<128> now) {
    return replace32(old[127:96], now[127:96]) + replace32(old[95:64], now[95:64])
         + replace32(old[63:32], now[63:32]) + replace32(old[31:0], now[31:0]);
}

/* ~(~HC + delta) with end-around carry. delta sums at most 36 words (IPv6: two addresses and
 * two ports, old and new), so with ~HC the total stays below 2^22 and two folds suffice. */
bit<16> csum_replace(in bit<16> check, in bit<32> delta) {
    bit<32> sum = (bit<32>) (~check) + delta;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return ~sum[15:0];
}

/* ------------------------------------------------------------------------------------------ */
/* Headers                                                                                     */

/* Prepended to every frame sent to the CPU port; emitted first (BMv2's PI strips it into
 * PacketIn metadata: ingress_port = id 1, reason = id 2). */
@controller_header("packet_in")
header packet_in_t {
    bit<16> ingress_port;
    bit<8>  reason;
}

/* Carried by every frame the controller sends (PacketOut metadata: egress_port = id 1). */
@controller_header("packet_out")
header packet_out_t {
    bit<16> egress_port;
}

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}

/* One 802.1Q/802.1ad tag; its TPID is the EtherType field before it. */
header vlan_t {
    bit<3>  pcp;
    bit<1>  dei;
    bit<12> vid;
    bit<16> etherType;
}

/* PPPoE session header (RFC 2516) with the PPP protocol field that follows it: the kernel's
 * PPPOE_SES_HLEN (8 bytes). length counts the PPP payload including the protocol field. */
header pppoe_t {
    bit<4>  version;
    bit<4>  pppoeType;
    bit<8>  code;
    bit<16> sessionId;
    bit<16> length;
    bit<16> protocol;
}

header ipv4_t {
    bit<4>  version;
    bit<4>  ihl;
    bit<8>  diffserv;
    bit<16> totalLen;
    bit<16> identification;
    bit<3>  flags;       /* reserved, DF, MF (MF is the least significant bit) */
    bit<13> fragOffset;
    bit<8>  ttl;
    bit<8>  protocol;
    bit<16> hdrChecksum;
    bit<32> srcAddr;
    bit<32> dstAddr;
}

header ipv6_t {
    bit<4>   version;
    bit<8>   trafficClass;
    bit<20>  flowLabel;
    bit<16>  payloadLen;
    bit<8>   nextHdr;
    bit<8>   hopLimit;
    bit<128> srcAddr;
    bit<128> dstAddr;
}

/* TCP without options: options stay in the payload, which the checksum covers anyway. */
header tcp_t {
    bit<16> srcPort;
    bit<16> dstPort;
    bit<32> seqNo;
    bit<32> ackNo;
    bit<4>  dataOffset;
    bit<4>  res;
    bit<8>  flags;       /* CWR ECE URG ACK PSH RST SYN FIN */
    bit<16> window;
    bit<16> checksum;
    bit<16> urgentPtr;
}

header udp_t {
    bit<16> srcPort;
    bit<16> dstPort;
    bit<16> length;
    bit<16> checksum;
}

struct headers_t {
    packet_in_t  packet_in;
    packet_out_t packet_out;
    ethernet_t   ethernet;
    vlan_t       vlan0;          /* outer tag */
    vlan_t       vlan1;          /* inner tag */
    pppoe_t      pppoe;
    ipv4_t       ipv4;
    ipv6_t       ipv6;
    tcp_t        tcp;
    udp_t        udp;
}

/* Flat on purpose: one level keeps the compiled field names ("scalars") obvious. */
struct metadata_t {
    bit<16>  l4_sport;        /* L4 ports from TCP or UDP: the flow key's sport/dport */
    bit<16>  l4_dport;
    bit<1>   ipv6_ext_hdr;    /* IPv6 next header is an extension header (set by the parser) */
    bit<16>  ip_len;          /* L3 length (what the kernel compares with the flow's MTU) */
    bit<32>  l4_delta;        /* sum of ~old + new over the rewritten pseudo-header words, ports */
    bit<8>   punt_reason;     /* PUNT_*; PUNT_NONE while the frame may still be forwarded */
    bit<2>   punt_color;      /* punt_meter's verdict for a frame on its way to the CPU */
    bit<1>   rewritten;       /* 1 only for forwarded hits: gates the IPv4 checksum update */
    /* The ingress encapsulation, the kernel tuple's encap[2] ({id, proto}; zero when absent),
     * outermost first: a VLAN id with its TPID, or a PPPoE session id with 0x8864. */
    bit<16>  encap0_id;
    bit<16>  encap0_proto;
    bit<16>  encap1_id;
    bit<16>  encap1_proto;
    bit<8>   encap_punt;      /* PUNT_* for an encapsulation the fast path does not take */
    bit<16>  ppp_proto;       /* PPP protocol of the L3 header, for a pushed PPPoE header */
    /* The hit entry's action parameters, applied only after the MTU and FIN/RST checks pass. */
    bit<9>   out_port;
    bit<48>  out_smac;
    bit<48>  out_dmac;
    bit<32>  out_src_v4;
    bit<32>  out_dst_v4;
    bit<128> out_src_v6;
    bit<128> out_dst_v6;
    bit<16>  out_sport;
    bit<16>  out_dport;
    bit<16>  out_mtu;
    bit<16>  out_encap0_id;   /* the encapsulation to push, outermost first (proto 0: none) */
    bit<16>  out_encap0_proto;
    bit<16>  out_encap1_id;
    bit<16>  out_encap1_proto;
}

/* ------------------------------------------------------------------------------------------ */
/* Parser                                                                                      */

parser FtParser(packet_in packet,
                out headers_t hdr,
                inout metadata_t meta,
                inout standard_metadata_t standard_metadata) {

    state start {
        transition select(standard_metadata.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    /* The controller's frame follows the packet_out header; it is not parsed further, so it
     * leaves the switch byte for byte as the controller built it. */
    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition accept;
    }

    /* Up to two encapsulations, as the kernel fast path takes them (nf_flow_tuple_encap,
     * nf_flow_skb_encap_protocol): an outer tag of either TPID (the one the NIC or
     * skb_vlan_untag strips into the hardware-accelerated tag), then an in-band 802.1Q tag or
     * a PPPoE session; or a PPPoE session alone. Anything else under a tag (ARP, ...) stops
     * there and is punted as NON_IP. */
    state parse_ethernet {
        packet.extract(hdr.ethernet);
        meta.encap0_id = 0;
        meta.encap0_proto = 0;
        meta.encap1_id = 0;
        meta.encap1_proto = 0;
        meta.encap_punt = PUNT_NONE;
        transition select(hdr.ethernet.etherType) {
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            ETHERTYPE_VLAN: parse_vlan0;
            ETHERTYPE_QINQ: parse_vlan0;
            ETHERTYPE_PPPOE_SESSION: parse_pppoe0;
            ETHERTYPE_PPPOE_DISCOVERY: pppoe_discovery;
            default: accept;
        }
    }

    /* The flow key holds the VLAN id (the hardware rule's vlan_id, mask 0xfff): the priority
     * bits do not split a flow. */
    state parse_vlan0 {
        packet.extract(hdr.vlan0);
        meta.encap0_id = (bit<16>) hdr.vlan0.vid;
        meta.encap0_proto = hdr.ethernet.etherType;
        transition select(hdr.vlan0.etherType) {
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            ETHERTYPE_VLAN: parse_vlan1;
            ETHERTYPE_QINQ: encap_unsupported;
            ETHERTYPE_PPPOE_SESSION: parse_pppoe1;
            ETHERTYPE_PPPOE_DISCOVERY: pppoe_discovery;
            default: accept;
        }
    }

    state parse_vlan1 {
        packet.extract(hdr.vlan1);
        meta.encap1_id = (bit<16>) hdr.vlan1.vid;
        meta.encap1_proto = hdr.vlan0.etherType;
        transition select(hdr.vlan1.etherType) {
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            ETHERTYPE_VLAN: encap_unsupported;
            ETHERTYPE_QINQ: encap_unsupported;
            ETHERTYPE_PPPOE_SESSION: encap_unsupported;
            ETHERTYPE_PPPOE_DISCOVERY: pppoe_discovery;
            default: accept;
        }
    }

    state parse_pppoe0 {
        packet.extract(hdr.pppoe);
        meta.encap0_id = hdr.pppoe.sessionId;
        meta.encap0_proto = ETHERTYPE_PPPOE_SESSION;
        transition parse_ppp;
    }

    state parse_pppoe1 {
        packet.extract(hdr.pppoe);
        meta.encap1_id = hdr.pppoe.sessionId;
        meta.encap1_proto = ETHERTYPE_PPPOE_SESSION;
        transition parse_ppp;
    }

    /* Only the PPP protocol decides, as __nf_flow_pppoe_proto: IPv4 or IPv6, else not IP. */
    state parse_ppp {
        transition select(hdr.pppoe.protocol) {
            PPP_IPV4: parse_ipv4;
            PPP_IPV6: parse_ipv6;
            default: ppp_not_ip;
        }
    }

    state ppp_not_ip {
        meta.encap_punt = PUNT_PPP_NOT_IP;
        transition accept;
    }

    state pppoe_discovery {
        meta.encap_punt = PUNT_PPPOE_DISCOVERY;
        transition accept;
    }

    /* A third encapsulation, or an in-band 802.1ad tag under the outer one
     * (NF_FLOW_TABLE_ENCAP_MAX is 2, and the kernel takes only 802.1Q in band). */
    state encap_unsupported {
        meta.encap_punt = PUNT_ENCAP_UNSUPPORTED;
        transition accept;
    }

    /* L4 is parsed only where it is really there: no options (ihl 5), not a fragment (MF clear,
     * offset 0). Everything else is punted by the ingress checks before L4 matters. */
    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        transition select(hdr.ipv4.ihl, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.protocol) {
            (4w5, 3w0 &&& 3w1, 13w0, IP_PROTO_TCP): parse_tcp;
            (4w5, 3w0 &&& 3w1, 13w0, IP_PROTO_UDP): parse_udp;
            default: accept;
        }
    }

    /* Extension headers the kernel fast path refuses (nf_flow_tuple_ipv6 wants TCP/UDP right
     * after the fixed header): hop-by-hop, routing, fragment, ESP, AH, destination options,
     * mobility, HIP, shim6, experimental. Other next headers (ICMPv6, ...) are NOT_TCP_UDP. */
    state parse_ipv6 {
        packet.extract(hdr.ipv6);
        transition select(hdr.ipv6.nextHdr) {
            IP_PROTO_TCP: parse_tcp;
            IP_PROTO_UDP: parse_udp;
            0: ipv6_extension;
            43: ipv6_extension;
            44: ipv6_extension;
            50: ipv6_extension;
            51: ipv6_extension;
            60: ipv6_extension;
            135: ipv6_extension;
            139: ipv6_extension;
            140: ipv6_extension;
            253: ipv6_extension;
            254: ipv6_extension;
            default: accept;
        }
    }

    state ipv6_extension {
        meta.ipv6_ext_hdr = 1;
        transition accept;
    }

    state parse_tcp {
        packet.extract(hdr.tcp);
        meta.l4_sport = hdr.tcp.srcPort;
        meta.l4_dport = hdr.tcp.dstPort;
        transition accept;
    }

    state parse_udp {
        packet.extract(hdr.udp);
        meta.l4_sport = hdr.udp.srcPort;
        meta.l4_dport = hdr.udp.dstPort;
        transition accept;
    }
}

/* Nothing is verified: like the kernel fast path, a hit is forwarded whatever its checksums. */
control FtVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply { }
}

/* ------------------------------------------------------------------------------------------ */
/* Ingress                                                                                     */

control FtIngress(inout headers_t hdr,
                  inout metadata_t meta,
                  inout standard_metadata_t standard_metadata) {

    direct_counter(CounterType.packets_and_bytes) flow_v4_counter;
    direct_counter(CounterType.packets_and_bytes) flow_v6_counter;

    /* Control-plane policing, one cell per punt reason. A cell the controller never configured
     * is GREEN (no policing); with a MeterConfig, frames over its rate are RED: dropped here and
     * counted in punt_drops, so the controller is offered at most what it can take. */
    meter(PUNT_REASONS, MeterType.packets) punt_meter;
    counter(PUNT_REASONS, CounterType.packets_and_bytes) punt_drops;

    /* Table default: the flow is not offloaded (or not yet, or no longer). */
    action punt_miss() {
        meta.punt_reason = PUNT_MISS;
    }

    /* Hit actions only remember the entry's parameters: the frame may still be punted for MTU
     * or FIN/RST, and a punted frame must reach the controller exactly as it arrived. */
    /* push0/push1: the encapsulation the frame leaves with, outermost first (the other
     * direction's tuple encap, as nf_flow_encap_push and nf_flow_rule_route_common take it);
     * proto 0 pushes nothing. mtu is the egress device's L3 MTU (PPPoE: 1492). */
    action forward_v4(bit<9> port, bit<48> smac, bit<48> dmac, bit<32> src_addr,
                      bit<32> dst_addr, bit<16> sport, bit<16> dport, bit<16> mtu,
                      bit<16> push0_id, bit<16> push0_proto,
                      bit<16> push1_id, bit<16> push1_proto) {
        meta.out_port = port;
        meta.out_smac = smac;
        meta.out_dmac = dmac;
        meta.out_src_v4 = src_addr;
        meta.out_dst_v4 = dst_addr;
        meta.out_sport = sport;
        meta.out_dport = dport;
        meta.out_mtu = mtu;
        meta.out_encap0_id = push0_id;
        meta.out_encap0_proto = push0_proto;
        meta.out_encap1_id = push1_id;
        meta.out_encap1_proto = push1_proto;
    }

    action forward_v6(bit<9> port, bit<48> smac, bit<48> dmac, bit<128> src_addr,
                      bit<128> dst_addr, bit<16> sport, bit<16> dport, bit<16> mtu,
                      bit<16> push0_id, bit<16> push0_proto,
                      bit<16> push1_id, bit<16> push1_proto) {
        meta.out_port = port;
        meta.out_smac = smac;
        meta.out_dmac = dmac;
        meta.out_src_v6 = src_addr;
        meta.out_dst_v6 = dst_addr;
        meta.out_sport = sport;
        meta.out_dport = dport;
        meta.out_mtu = mtu;
        meta.out_encap0_id = push0_id;
        meta.out_encap0_proto = push0_proto;
        meta.out_encap1_id = push1_id;
        meta.out_encap1_proto = push1_proto;
    }

    /* Sizes: every offloaded connection takes one entry per direction, so 65536 IPv4 entries
     * hold 32768 connections and 16384 IPv6 entries 8192 (IPv6 is the smaller share of lab
     * traffic). p4c-bm2-ss would otherwise give 1024. A full 64K read is ~5.5 MB: readers must
     * raise gRPC's 4 MB receive limit. */
    table flow_v4 {
        key = {
            standard_metadata.ingress_port : exact @name("ingress_port");
            hdr.ipv4.srcAddr               : exact @name("src_addr");
            hdr.ipv4.dstAddr               : exact @name("dst_addr");
            hdr.ipv4.protocol              : exact @name("protocol");
            meta.l4_sport                  : exact @name("sport");
            meta.l4_dport                  : exact @name("dport");
            meta.encap0_id                 : exact @name("encap0_id");
            meta.encap0_proto              : exact @name("encap0_proto");
            meta.encap1_id                 : exact @name("encap1_id");
            meta.encap1_proto              : exact @name("encap1_proto");
        }
        actions = {
            forward_v4;
            @defaultonly punt_miss;
        }
        const default_action = punt_miss();
        counters = flow_v4_counter;
        support_timeout = true;
        size = 65536;
    }

    table flow_v6 {
        key = {
            standard_metadata.ingress_port : exact @name("ingress_port");
            hdr.ipv6.srcAddr               : exact @name("src_addr");
            hdr.ipv6.dstAddr               : exact @name("dst_addr");
            hdr.ipv6.nextHdr               : exact @name("protocol");
            meta.l4_sport                  : exact @name("sport");
            meta.l4_dport                  : exact @name("dport");
            meta.encap0_id                 : exact @name("encap0_id");
            meta.encap0_proto              : exact @name("encap0_proto");
            meta.encap1_id                 : exact @name("encap1_id");
            meta.encap1_proto              : exact @name("encap1_proto");
        }
        actions = {
            forward_v6;
            @defaultonly punt_miss;
        }
        const default_action = punt_miss();
        counters = flow_v6_counter;
        support_timeout = true;
        size = 16384;
    }

    /* The rewrite of a forwarded hit; `rewritten` turns the IPv4 checksum update on. The L4
     * delta is taken first, from the addresses and ports as received. */
    action rewrite_v4() {
        meta.l4_delta = replace32(hdr.ipv4.srcAddr, meta.out_src_v4)
                      + replace32(hdr.ipv4.dstAddr, meta.out_dst_v4)
                      + replace16(meta.l4_sport, meta.out_sport)
                      + replace16(meta.l4_dport, meta.out_dport);
        hdr.ethernet.srcAddr = meta.out_smac;
        hdr.ethernet.dstAddr = meta.out_dmac;
        hdr.ethernet.etherType = ETHERTYPE_IPV4;
        meta.ppp_proto = PPP_IPV4;
        hdr.ipv4.srcAddr = meta.out_src_v4;
        hdr.ipv4.dstAddr = meta.out_dst_v4;
        hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
        standard_metadata.egress_spec = meta.out_port;
        meta.rewritten = 1;
    }

    action rewrite_v6() {
        meta.l4_delta = replace128(hdr.ipv6.srcAddr, meta.out_src_v6)
                      + replace128(hdr.ipv6.dstAddr, meta.out_dst_v6)
                      + replace16(meta.l4_sport, meta.out_sport)
                      + replace16(meta.l4_dport, meta.out_dport);
        hdr.ethernet.srcAddr = meta.out_smac;
        hdr.ethernet.dstAddr = meta.out_dmac;
        hdr.ethernet.etherType = ETHERTYPE_IPV6;
        meta.ppp_proto = PPP_IPV6;
        hdr.ipv6.srcAddr = meta.out_src_v6;
        hdr.ipv6.dstAddr = meta.out_dst_v6;
        hdr.ipv6.hopLimit = hdr.ipv6.hopLimit - 1;
        standard_metadata.egress_spec = meta.out_port;
        meta.rewritten = 1;
    }

    /* nf_flow_encap_pop: the ingress tags and PPPoE header go (rewrite_v4/v6 already set the
     * EtherType to the L3 protocol's). */
    action pop_encap() {
        hdr.vlan0.setInvalid();
        hdr.vlan1.setInvalid();
        hdr.pppoe.setInvalid();
    }

    /* nf_flow_encap_push, innermost first: each push takes the EtherType in front of it as its
     * next protocol and puts its own there. The deparser emits vlan0, vlan1, pppoe in that
     * order, so the inner slot of the entry's encap list goes to vlan1 or pppoe and the outer
     * to vlan0 or pppoe: every combination the kernel builds (tag, tag + tag, tag + PPPoE,
     * PPPoE) comes out in wire order. PCP and DEI are pushed as 0, as skb_vlan_push(id). */
    action push_inner_vlan() {
        hdr.vlan1.setValid();
        hdr.vlan1.pcp = 0;
        hdr.vlan1.dei = 0;
        hdr.vlan1.vid = meta.out_encap1_id[11:0];
        hdr.vlan1.etherType = hdr.ethernet.etherType;
        hdr.ethernet.etherType = meta.out_encap1_proto;
    }

    action push_outer_vlan() {
        hdr.vlan0.setValid();
        hdr.vlan0.pcp = 0;
        hdr.vlan0.dei = 0;
        hdr.vlan0.vid = meta.out_encap0_id[11:0];
        hdr.vlan0.etherType = hdr.ethernet.etherType;
        hdr.ethernet.etherType = meta.out_encap0_proto;
    }

    /* nf_flow_pppoe_push: version 1, type 1, code 0 (session data), length = the PPP payload
     * (protocol field + IP packet). */
    action push_inner_pppoe() {
        hdr.pppoe.setValid();
        hdr.pppoe.version = 1;
        hdr.pppoe.pppoeType = 1;
        hdr.pppoe.code = 0;
        hdr.pppoe.sessionId = meta.out_encap1_id;
        hdr.pppoe.length = meta.ip_len + PPP_PROTOCOL_BYTES;
        hdr.pppoe.protocol = meta.ppp_proto;
        hdr.ethernet.etherType = ETHERTYPE_PPPOE_SESSION;
    }

    action push_outer_pppoe() {
        hdr.pppoe.setValid();
        hdr.pppoe.version = 1;
        hdr.pppoe.pppoeType = 1;
        hdr.pppoe.code = 0;
        hdr.pppoe.sessionId = meta.out_encap0_id;
        hdr.pppoe.length = meta.ip_len + PPP_PROTOCOL_BYTES;
        hdr.pppoe.protocol = meta.ppp_proto;
        hdr.ethernet.etherType = ETHERTYPE_PPPOE_SESSION;
    }

    /* nf_flow_nat_port_tcp + the address updates of nf_flow_nat_ip{,v6}: the TCP checksum
     * covers the pseudo-header, so it takes the whole delta. */
    action rewrite_tcp() {
        hdr.tcp.srcPort = meta.out_sport;
        hdr.tcp.dstPort = meta.out_dport;
        hdr.tcp.checksum = csum_replace(hdr.tcp.checksum, meta.l4_delta);
    }

    action rewrite_udp_ports() {
        hdr.udp.srcPort = meta.out_sport;
        hdr.udp.dstPort = meta.out_dport;
    }

    /* nf_flow_nat_port_udp: only a UDP checksum that is there (non-zero) is updated, and an
     * update that comes out 0 is sent as 0xffff (CSUM_MANGLED_0): 0 would mean "none". */
    action update_udp_checksum() {
        hdr.udp.checksum = csum_replace(hdr.udp.checksum, meta.l4_delta);
    }

    action udp_checksum_mangled_0() {
        hdr.udp.checksum = 0xffff;
    }

    /* The only way to the CPU: packet_in first, frame otherwise untouched. */
    action send_to_cpu() {
        hdr.packet_in.setValid();
        hdr.packet_in.ingress_port = (bit<16>) standard_metadata.ingress_port;
        hdr.packet_in.reason = meta.punt_reason;
        standard_metadata.egress_spec = CPU_PORT;
    }

    /* A frame from the controller: strip packet_out, send the rest as is. */
    action send_packet_out() {
        standard_metadata.egress_spec = (bit<9>) hdr.packet_out.egress_port;
        hdr.packet_out.setInvalid();
    }

    action drop() {
        mark_to_drop(standard_metadata);
    }

    action police_punt() {
        punt_meter.execute_meter((bit<32>) meta.punt_reason, meta.punt_color);
    }

    action drop_punt() {
        punt_drops.count((bit<32>) meta.punt_reason);
        mark_to_drop(standard_metadata);
    }

    apply {
        if (hdr.packet_out.isValid()) {
            /* Dropped, not wrapped: bit<16> -> bit<9> would turn 257 into port 1, and a frame
             * sent from the CPU back to the CPU would arrive without a packet_in header. */
            if (hdr.packet_out.egress_port > MAX_DATA_PORT
                    || hdr.packet_out.egress_port == (bit<16>) CPU_PORT) {
                drop();
            } else {
                send_packet_out();
            }
        } else {
            meta.punt_reason = PUNT_NONE;
            meta.rewritten = 0;
            /* Checks in the kernel fast path's order (nf_flow_offload_ip_hook): encapsulation
             * and non-IP, fragment/options or extension header, not TCP/UDP, TTL, lookup, MTU,
             * FIN/RST. The MTU check compares the L3 length with the egress device's MTU, as
             * nf_flow_exceeds_mtu compares skb->len (L3 + the ingress encapsulation's in-band
             * bytes) with mtu + that same offset; the pushed encapsulation is the egress
             * device's own (a 1492-byte pppoe-wan over a 1500-byte Ethernet port). */
            if (meta.encap_punt != PUNT_NONE) {
                meta.punt_reason = meta.encap_punt;
            } else if (hdr.ipv4.isValid() && hdr.ipv4.version == 4) {
                meta.ip_len = hdr.ipv4.totalLen;
                if (hdr.ipv4.ihl != 5 || (hdr.ipv4.flags & 3w1) != 0 || hdr.ipv4.fragOffset != 0) {
                    meta.punt_reason = PUNT_IPV4_FRAG_OR_OPTIONS;
                } else if (!hdr.tcp.isValid() && !hdr.udp.isValid()) {
                    meta.punt_reason = PUNT_NOT_TCP_UDP;
                } else if (hdr.ipv4.ttl <= 1) {
                    meta.punt_reason = PUNT_TTL;
                } else if (flow_v4.apply().hit) {
                    if (meta.ip_len > meta.out_mtu) {
                        meta.punt_reason = PUNT_MTU;
                    } else if (hdr.tcp.isValid() && (hdr.tcp.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) != 0) {
                        meta.punt_reason = PUNT_TCP_FIN_RST;
                    } else {
                        rewrite_v4();
                    }
                }
            } else if (hdr.ipv6.isValid() && hdr.ipv6.version == 6) {
                meta.ip_len = hdr.ipv6.payloadLen + IPV6_HEADER_BYTES;
                if (meta.ipv6_ext_hdr == 1) {
                    meta.punt_reason = PUNT_IPV6_EXT_HEADER;
                } else if (!hdr.tcp.isValid() && !hdr.udp.isValid()) {
                    meta.punt_reason = PUNT_NOT_TCP_UDP;
                } else if (hdr.ipv6.hopLimit <= 1) {
                    meta.punt_reason = PUNT_TTL;
                } else if (flow_v6.apply().hit) {
                    if (meta.ip_len > meta.out_mtu) {
                        meta.punt_reason = PUNT_MTU;
                    } else if (hdr.tcp.isValid() && (hdr.tcp.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) != 0) {
                        meta.punt_reason = PUNT_TCP_FIN_RST;
                    } else {
                        rewrite_v6();
                    }
                }
            } else {
                meta.punt_reason = PUNT_NON_IP;
            }

            if (meta.rewritten == 1) {
                pop_encap();
                if (meta.out_encap1_proto == ETHERTYPE_PPPOE_SESSION) {
                    push_inner_pppoe();
                } else if (meta.out_encap1_proto == ETHERTYPE_VLAN
                           || meta.out_encap1_proto == ETHERTYPE_QINQ) {
                    push_inner_vlan();
                }
                if (meta.out_encap0_proto == ETHERTYPE_PPPOE_SESSION) {
                    push_outer_pppoe();
                } else if (meta.out_encap0_proto == ETHERTYPE_VLAN
                           || meta.out_encap0_proto == ETHERTYPE_QINQ) {
                    push_outer_vlan();
                }
                if (hdr.tcp.isValid()) {
                    rewrite_tcp();
                } else {
                    rewrite_udp_ports();
                    if (hdr.udp.checksum != 0) {
                        update_udp_checksum();
                        if (hdr.udp.checksum == 0) {
                            udp_checksum_mangled_0();
                        }
                    }
                }
            } else {
                police_punt();
                if (meta.punt_color == METER_RED) {
                    drop_punt();
                } else {
                    send_to_cpu();
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Egress, checksums, deparser                                                                 */

control FtEgress(inout headers_t hdr,
                 inout metadata_t meta,
                 inout standard_metadata_t standard_metadata) {
    apply { }
}

/* BMv2 runs an update for every packet whose condition holds, so it is gated on `rewritten`:
 * punted and packet_out frames keep their bytes. The IPv4 header checksum is recomputed (it
 * covers only the header, and a header with a bad checksum never reaches the kernel's flowtable:
 * ip_rcv_core drops it); TCP/UDP checksums were updated incrementally in FtIngress. */
control FtComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(
            hdr.ipv4.isValid() && meta.rewritten == 1,
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.diffserv, hdr.ipv4.totalLen,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.fragOffset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.srcAddr, hdr.ipv4.dstAddr },
            hdr.ipv4.hdrChecksum,
            HashAlgorithm.csum16);
    }
}

/* packet_in first (PI strips it from the front of CPU-bound frames); packet_out is never
 * emitted, so it cannot leave the switch. Invalid headers emit nothing. */
control FtDeparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.packet_in);
        packet.emit(hdr.ethernet);
        packet.emit(hdr.vlan0);
        packet.emit(hdr.vlan1);
        packet.emit(hdr.pppoe);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.ipv6);
        packet.emit(hdr.tcp);
        packet.emit(hdr.udp);
    }
}

V1Switch(FtParser(), FtVerifyChecksum(), FtIngress(), FtEgress(), FtComputeChecksum(),
         FtDeparser()) main;
