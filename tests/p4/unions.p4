/* Interpreter test: header unions and a header-union stack (see unions.stf).
 * After Ethernet (type 0x88B5) a tag {kind, result} is followed by TLV-like options, each one
 * of two shapes chosen by its first byte: 0x0A (2 bytes) or 0x0B (4 bytes). The first option is
 * extracted into the union `first`, the next ones into the union stack `rest` (extract into
 * `rest.next.a` / `rest.next.b`); a third one overflows the stack (StackOutOfBounds) and stays
 * in the payload. The ingress, by tag.kind: 1 copies the union (`copy = first`), 2 makes
 * `first.b` valid when `first.a` is (which invalidates `first.a`), 3 pushes an `a` option in
 * front of `rest`; then it writes the validities into tag.result (1: first.isValid(),
 * 2: first.a, 4: first.b, 8: copy.isValid()). The deparser emits the unions and the stack. */
#include <core.p4>
#include <v1model.p4>

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}

header tag_t {
    bit<8> kind;
    bit<8> result;
}

header opt_a_t {
    bit<8> opt;
    bit<8> val;
}

header opt_b_t {
    bit<8>  opt;
    bit<8>  len;
    bit<16> val;
}

header_union opt_u {
    opt_a_t a;
    opt_b_t b;
}

struct headers_t {
    ethernet_t ethernet;
    tag_t      tag;
    opt_u      first;
    opt_u      copy;
    opt_u[2]   rest;
}

struct metadata_t { }

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {
            0x88B5: parse_tag;
            default: accept;
        }
    }
    state parse_tag {
        packet.extract(hdr.tag);
        transition select(packet.lookahead<bit<8>>()) {
            0x0A: first_a;
            0x0B: first_b;
            default: accept;
        }
    }
    state first_a {
        packet.extract(hdr.first.a);
        transition parse_rest;
    }
    state first_b {
        packet.extract(hdr.first.b);
        transition parse_rest;
    }
    state parse_rest {
        transition select(packet.lookahead<bit<8>>()) {
            0x0A: rest_a;
            0x0B: rest_b;
            default: accept;
        }
    }
    state rest_a {
        packet.extract(hdr.rest.next.a);
        transition parse_rest;
    }
    state rest_b {
        packet.extract(hdr.rest.next.b);
        transition parse_rest;
    }
}

control VC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control I(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply {
        standard_metadata.egress_spec = 1;
        if (hdr.tag.isValid()) {
            if (hdr.tag.kind == 1) {
                hdr.copy = hdr.first;
            } else if (hdr.tag.kind == 2) {
                if (hdr.first.a.isValid()) {
                    hdr.first.b.setValid();
                    hdr.first.b.opt = 0x0B;
                    hdr.first.b.len = 4;
                    hdr.first.b.val = 0xBEEF;
                }
            } else if (hdr.tag.kind == 3) {
                hdr.rest.push_front(1);
                hdr.rest[0].a.setValid();
                hdr.rest[0].a.opt = 0x0A;
                hdr.rest[0].a.val = 0x77;
            }
            bit<8> result = 0;
            if (hdr.first.isValid()) {
                result = result | 1;
            }
            if (hdr.first.a.isValid()) {
                result = result | 2;
            }
            if (hdr.first.b.isValid()) {
                result = result | 4;
            }
            if (hdr.copy.isValid()) {
                result = result | 8;
            }
            hdr.tag.result = result;
        }
    }
}

control E(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply { }
}

control CC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control D(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.ethernet);
        packet.emit(hdr.tag);
        packet.emit(hdr.first);
        packet.emit(hdr.copy);
        packet.emit(hdr.rest);
    }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
