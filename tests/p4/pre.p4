/* Interpreter test: the v1model traffic manager as simple_switch runs it (see pre.stf).
 * d.op picks the path: 1 multicast to group 1, 2 ingress clone to session 5, 3 resubmit once,
 * 4 recirculate once, 5 egress clone to session 6. Ingress writes the instance_type and
 * ingress_port it sees; egress writes the instance_type, egress_rid and both metadata fields it
 * sees. meta.kept is in field list 1 (kept by clones, resubmit, recirculate); meta.lost is not
 * (simple_switch zeroes all metadata of a copy that starts over, ingress_port included). */
#include <core.p4>
#include <v1model.p4>

header data_t {
    bit<8>  op;
    bit<8>  itype_in;   /* instance_type in ingress (of the last ingress pass) */
    bit<8>  itype_out;  /* instance_type in egress */
    bit<16> rid;        /* egress_rid in egress */
    bit<8>  port_in;    /* ingress_port in ingress (of the last ingress pass) */
    bit<8>  kept;       /* meta.kept in egress */
    bit<8>  lost;       /* meta.lost in egress */
}

struct headers_t { data_t d; }

struct metadata_t {
    @field_list(1)
    bit<8> kept;
    bit<8> lost;
}

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.d);
        transition accept;
    }
}

control VC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control I(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply {
        hdr.d.itype_in = (bit<8>) standard_metadata.instance_type;
        hdr.d.port_in = (bit<8>) standard_metadata.ingress_port;
        meta.lost = 0x77;
        standard_metadata.egress_spec = 1;
        if (hdr.d.op == 1) {
            standard_metadata.mcast_grp = 1;
        } else if (hdr.d.op == 2) {
            meta.kept = 0x42;
            clone_preserving_field_list(CloneType.I2E, 5, 1);
        } else if (hdr.d.op == 3) {
            if (standard_metadata.instance_type == 0) {
                meta.kept = 0x33;
                resubmit_preserving_field_list(1);
            }
        }
    }
}

control E(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply {
        hdr.d.itype_out = (bit<8>) standard_metadata.instance_type;
        hdr.d.rid = standard_metadata.egress_rid;
        hdr.d.kept = meta.kept;
        hdr.d.lost = meta.lost;
        if (hdr.d.op == 4 && hdr.d.itype_in == 0) {
            meta.kept = 0x44;
            recirculate_preserving_field_list(1);
        }
        if (hdr.d.op == 5 && standard_metadata.instance_type == 0) {
            meta.kept = 0x55;
            clone_preserving_field_list(CloneType.E2E, 6, 1);
        }
    }
}

control CC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control D(packet_out packet, in headers_t hdr) {
    apply { packet.emit(hdr.d); }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
