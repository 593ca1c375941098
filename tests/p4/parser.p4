/* Interpreter test: parser selects (see parser.stf).
 * Two-field select with a masked keyset and a don't-care (_), a value_set (left empty by the
 * STF: it must match nothing), select on lookahead<bit<8>> without consuming it, parser
 * assignments to metadata, and a default. The ingress writes which headers were parsed into
 * the frame's `seen` byte: bit 0 opt_a, bit 1 opt_b, bit 2 lookahead branch, bit 3 value set. */
#include <core.p4>
#include <v1model.p4>

header base_t {
    bit<8>  kind;
    bit<8>  sub;
    bit<16> val;
    bit<8>  seen;
}

header opt_t {
    bit<16> data;
}

struct headers_t {
    base_t base;
    opt_t  opt_a;
    opt_t  opt_b;
}

struct metadata_t {
    bit<1> via_lookahead;
    bit<1> via_vset;
}

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t standard_metadata) {
    value_set<bit<16>>(4) special_vals;

    state start {
        packet.extract(hdr.base);
        transition select(hdr.base.kind, hdr.base.sub) {
            (8w0x10 &&& 8w0xF0, _): parse_a;      /* any kind 0x1X */
            (8w0x20, 8w0x00 &&& 8w0x01): parse_b;  /* kind 0x20 with an even sub */
            (8w0x30, _): check_val;
            default: accept;
        }
    }

    state check_val {
        transition select(hdr.base.val) {
            special_vals: vset_hit;
            0x0BAD: parse_b;
            default: accept;
        }
    }

    state vset_hit {
        meta.via_vset = 1;
        transition accept;
    }

    /* After opt_a, peek at the next byte: 0xFF means opt_b follows. */
    state parse_a {
        packet.extract(hdr.opt_a);
        transition select(packet.lookahead<bit<8>>()) {
            0xFF: parse_b_peeked;
            default: accept;
        }
    }

    state parse_b_peeked {
        meta.via_lookahead = 1;
        transition parse_b;
    }

    state parse_b {
        packet.extract(hdr.opt_b);
        transition accept;
    }
}

control VC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control I(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply {
        hdr.base.seen = 4w0 ++ meta.via_vset ++ meta.via_lookahead
                        ++ (bit<1>) hdr.opt_b.isValid() ++ (bit<1>) hdr.opt_a.isValid();
        standard_metadata.egress_spec = 1;
    }
}

control E(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply { }
}

control CC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control D(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.base);
        packet.emit(hdr.opt_a);
        packet.emit(hdr.opt_b);
    }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
