/* Interpreter test: match kinds and priorities (see tables.stf).
 * t_lpm (lpm: longest prefix wins), t_tern (ternary: priority decides between overlapping
 * entries), t_range (range, with priorities), t_exact (const entries, const default action),
 * t_multi (exact + ternary + lpm in one key), hit/miss and action_run in the apply block.
 * Each table writes its own result byte; ingress port 0 -> egress port 1. */
#include <core.p4>
#include <v1model.p4>

header key_t {
    bit<32> addr;
    bit<16> tval;
    bit<16> rval;
    bit<8>  out_lpm;
    bit<8>  out_tern;
    bit<8>  out_range;
    bit<8>  out_exact;
    bit<8>  out_multi;
    bit<8>  out_flow;   /* 1: t_lpm hit, 2: t_lpm miss; +0x10 when t_exact ran set_exact */
}

struct headers_t { key_t k; }
struct metadata_t { }

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.k);
        transition accept;
    }
}

control VC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control I(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    action set_lpm(bit<8> v) { hdr.k.out_lpm = v; }
    action set_tern(bit<8> v) { hdr.k.out_tern = v; }
    action set_range(bit<8> v) { hdr.k.out_range = v; }
    action set_exact(bit<8> v) { hdr.k.out_exact = v; }
    action set_multi(bit<8> v) { hdr.k.out_multi = v; }
    action miss_exact() { hdr.k.out_exact = 0xEE; }
    action nop() { }

    table t_lpm {
        key = { hdr.k.addr : lpm; }
        actions = { set_lpm; nop; }
        default_action = nop();
    }
    table t_tern {
        key = { hdr.k.tval : ternary; }
        actions = { set_tern; nop; }
        default_action = nop();
    }
    table t_range {
        key = { hdr.k.rval : range; }
        actions = { set_range; nop; }
        default_action = nop();
    }
    table t_exact {
        key = { hdr.k.tval : exact; }
        actions = { set_exact; miss_exact; }
        const default_action = miss_exact();
        const entries = {
            0x1234 : set_exact(0x01);
            0xABCD : set_exact(0x02);
        }
    }
    table t_multi {
        key = {
            hdr.k.rval : exact;
            hdr.k.tval : ternary;
            hdr.k.addr : lpm;
        }
        actions = { set_multi; nop; }
        default_action = nop();
    }

    apply {
        standard_metadata.egress_spec = 1;
        if (t_lpm.apply().hit) {
            hdr.k.out_flow = 1;
        } else {
            hdr.k.out_flow = 2;
        }
        t_tern.apply();
        t_range.apply();
        switch (t_exact.apply().action_run) {
            set_exact: {
                hdr.k.out_flow = hdr.k.out_flow + 0x10;
            }
        }
        t_multi.apply();
    }
}

control E(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply { }
}

control CC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control D(packet_out packet, in headers_t hdr) {
    apply { packet.emit(hdr.k); }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
