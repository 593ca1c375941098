/* Interpreter test: expressions with exact bit widths (see arith.stf).
 * Unsigned wrap-around of +, -, *; bitwise ops; shifts by constants, by fields, and by >= width;
 * signed (int<8>) add/sub, arithmetic shift right, sign extension, signed vs unsigned compare;
 * slices, concatenation, truncating casts, bool -> bit casts, ?: and nested if/else. */
#include <core.p4>
#include <v1model.p4>

header data_t {
    bit<8>  a;
    bit<8>  b;
    int<8>  sa;
    int<8>  sb;
    bit<16> w;
    bit<8>  r_add;       /* a + b, wraps */
    bit<8>  r_sub;       /* a - b, wraps */
    bit<8>  r_mul;       /* a * b, low 8 bits */
    bit<8>  r_and;
    bit<8>  r_or;
    bit<8>  r_xor;
    bit<8>  r_not;
    bit<8>  r_shl;       /* b << 3 */
    bit<8>  r_shr;       /* a >> b[2:0] */
    bit<8>  r_shl_big;   /* a << w[3:0]: 0 when the amount is >= 8 */
    int<8>  r_sadd;      /* sa + sb, wraps */
    int<8>  r_ssub;      /* sa - sb, wraps */
    int<8>  r_sshr;      /* sa >> 2, arithmetic */
    bit<8>  r_slice_cat; /* w[11:8] ++ a[3:0] */
    bit<16> r_cat;       /* a ++ b */
    int<16> r_sext;      /* (int<16>) sa */
    bit<8>  r_trunc;     /* (bit<8>) w */
    bit<8>  r_cmp;       /* 0000 ++ (a > b) ++ (a == b) ++ (sa < sb) ++ ((bit<8>) sa < (bit<8>) sb) */
    bit<8>  r_max;       /* a > b ? a : b */
    bit<8>  r_cond;      /* 1: sa >= 0; 2: sa < 0 and w[15:15] == 0; 3: sa < 0 and w[15:15] == 1 */
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
    action compute() {
        hdr.d.r_add = hdr.d.a + hdr.d.b;
        hdr.d.r_sub = hdr.d.a - hdr.d.b;
        hdr.d.r_mul = hdr.d.a * hdr.d.b;
        hdr.d.r_and = hdr.d.a & hdr.d.b;
        hdr.d.r_or = hdr.d.a | hdr.d.b;
        hdr.d.r_xor = hdr.d.a ^ hdr.d.b;
        hdr.d.r_not = ~hdr.d.a;
        hdr.d.r_shl = hdr.d.b << 3;
        hdr.d.r_shr = hdr.d.a >> hdr.d.b[2:0];
        hdr.d.r_shl_big = hdr.d.a << hdr.d.w[3:0];
        hdr.d.r_sadd = hdr.d.sa + hdr.d.sb;
        hdr.d.r_ssub = hdr.d.sa - hdr.d.sb;
        hdr.d.r_sshr = hdr.d.sa >> 2;
        hdr.d.r_slice_cat = hdr.d.w[11:8] ++ hdr.d.a[3:0];
        hdr.d.r_cat = hdr.d.a ++ hdr.d.b;
        hdr.d.r_sext = (int<16>) hdr.d.sa;
        hdr.d.r_trunc = (bit<8>) hdr.d.w;
        hdr.d.r_cmp = 4w0 ++ (bit<1>) (hdr.d.a > hdr.d.b) ++ (bit<1>) (hdr.d.a == hdr.d.b)
                      ++ (bit<1>) (hdr.d.sa < hdr.d.sb)
                      ++ (bit<1>) ((bit<8>) hdr.d.sa < (bit<8>) hdr.d.sb);
        hdr.d.r_max = hdr.d.a > hdr.d.b ? hdr.d.a : hdr.d.b;
        standard_metadata.egress_spec = standard_metadata.ingress_port;
    }

    apply {
        compute();
        if (hdr.d.sa < 0) {
            if (hdr.d.w[15:15] == 1) {
                hdr.d.r_cond = 3;
            } else {
                hdr.d.r_cond = 2;
            }
        } else {
            hdr.d.r_cond = 1;
        }
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
