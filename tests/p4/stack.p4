/* Interpreter test: header stacks (see stack.stf).
 * The parser fills mpls[4] with extract(.next) until bottom-of-stack, selecting on .last; the
 * ingress pops (pop_front) or pushes (push_front + setValid) labels and reads stack elements by
 * constant index; the deparser emits the valid elements in order. */
#include <core.p4>
#include <v1model.p4>

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}

header mpls_t {
    bit<20> label;
    bit<3>  tc;
    bit<1>  bos;
    bit<8>  ttl;
}

struct headers_t {
    ethernet_t ethernet;
    mpls_t[4]  mpls;
}

struct metadata_t { }

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.etherType) {
            0x8847: parse_mpls;
            default: accept;
        }
    }
    state parse_mpls {
        packet.extract(hdr.mpls.next);
        transition select(hdr.mpls.last.bos) {
            0: parse_mpls;
            1: accept;
        }
    }
}

control VC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control I(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    /* Label 100 on top: pop it, out of port 2. */
    action pop_label() {
        hdr.mpls.pop_front(1);
        standard_metadata.egress_spec = 2;
    }
    /* Label 200 on top: push label 300 above it with the old top's TTL - 1, out of port 3. */
    action push_label() {
        hdr.mpls.push_front(1);
        hdr.mpls[0].setValid();
        hdr.mpls[0].label = 300;
        hdr.mpls[0].tc = 0;
        hdr.mpls[0].bos = 0;
        hdr.mpls[0].ttl = hdr.mpls[1].ttl - 1;
        standard_metadata.egress_spec = 3;
    }
    action other() {
        standard_metadata.egress_spec = 1;
    }
    apply {
        if (hdr.mpls[0].isValid() && hdr.mpls[0].label == 100) {
            pop_label();
        } else if (hdr.mpls[0].isValid() && hdr.mpls[0].label == 200) {
            push_label();
        } else {
            other();
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
        packet.emit(hdr.mpls);
    }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
