/* Interpreter test: registers and counters (see stateful.stf).
 * A register<bit<32>> counts frames per ingress port (read, add, write back) and the count is
 * written into the frame; a register<bit<16>> keeps the previous frame's tag (read before
 * write, so each frame reports its predecessor's); an indirect counter counts packets and bytes
 * per ingress port; a direct counter counts hits of t_tag. Egress port = ingress port + 1. */
#include <core.p4>
#include <v1model.p4>

header data_t {
    bit<16> tag;
    bit<32> count;      /* frames seen so far on this ingress port, this one included */
    bit<16> prev_tag;   /* tag of the previous frame from any port (0 for the first) */
    bit<8>  hit;        /* 1 when t_tag hit */
}

struct headers_t { data_t d; }
struct metadata_t { }

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.d);
        transition accept;
    }
}

control VC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control I(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    register<bit<32>>(8) per_port;
    register<bit<16>>(1) last_tag;
    counter(8, CounterType.packets_and_bytes) port_counter;
    direct_counter(CounterType.packets) tag_counter;

    action count_frame() {
        bit<32> index = (bit<32>) standard_metadata.ingress_port;
        bit<32> seen;
        per_port.read(seen, index);
        seen = seen + 1;
        per_port.write(index, seen);
        hdr.d.count = seen;
        port_counter.count(index);
        bit<16> previous;
        last_tag.read(previous, 0);
        hdr.d.prev_tag = previous;
        last_tag.write(0, hdr.d.tag);
        standard_metadata.egress_spec = standard_metadata.ingress_port + 1;
    }

    action mark_hit() {
        hdr.d.hit = 1;
    }

    table t_tag {
        key = { hdr.d.tag : exact; }
        actions = { mark_hit; NoAction; }
        default_action = NoAction();
        counters = tag_counter;
    }

    apply {
        count_frame();
        t_tag.apply();
    }
}

control E(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply { }
}

control CC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control D(packet_out packet, in headers_t hdr) {
    apply { packet.emit(hdr.d); }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
