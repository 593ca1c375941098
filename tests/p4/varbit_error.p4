/* Interpreter test: a varbit extract whose length argument is invalid (see varbit_error.stf).
 * After Ethernet, len_t gives the length in bits of a varbit<16> field; the parser error ends up
 * in len.code (0 NoError, 1 PacketTooShort, 4 HeaderTooShort, 6 ParserInvalidArgument, as the
 * core errors are numbered): a length that is not a multiple of 8 is ParserInvalidArgument, a
 * packet too short for the length is PacketTooShort, and a length over the field's 16 bits is
 * HeaderTooShort, checked in that order. Every frame leaves on port 1; an extracted varbit is
 * emitted again, one that failed stays in the payload. */
#include <core.p4>
#include <v1model.p4>

header ethernet_t {
    bit<48> dstAddr;
    bit<48> srcAddr;
    bit<16> etherType;
}

header len_t {
    bit<8> code;
    bit<8> n_bits;
}

header var_t {
    varbit<16> data;
}

struct headers_t {
    ethernet_t ethernet;
    len_t      len;
    var_t      var;
}

struct metadata_t { }

parser P(packet_in packet, out headers_t hdr, inout metadata_t meta,
         inout standard_metadata_t standard_metadata) {
    state start {
        packet.extract(hdr.ethernet);
        packet.extract(hdr.len);
        packet.extract(hdr.var, (bit<32>) hdr.len.n_bits);
        transition accept;
    }
}

control VC(inout headers_t hdr, inout metadata_t meta) { apply { } }

control I(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t standard_metadata) {
    apply {
        standard_metadata.egress_spec = 1;
        if (standard_metadata.parser_error == error.NoError) {
            hdr.len.code = 0;
        } else if (standard_metadata.parser_error == error.PacketTooShort) {
            hdr.len.code = 1;
        } else if (standard_metadata.parser_error == error.NoMatch) {
            hdr.len.code = 2;
        } else if (standard_metadata.parser_error == error.StackOutOfBounds) {
            hdr.len.code = 3;
        } else if (standard_metadata.parser_error == error.HeaderTooShort) {
            hdr.len.code = 4;
        } else if (standard_metadata.parser_error == error.ParserTimeout) {
            hdr.len.code = 5;
        } else if (standard_metadata.parser_error == error.ParserInvalidArgument) {
            hdr.len.code = 6;
        } else {
            hdr.len.code = 7;
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
        packet.emit(hdr.len);
        packet.emit(hdr.var);
    }
}

V1Switch(P(), VC(), I(), E(), CC(), D()) main;
