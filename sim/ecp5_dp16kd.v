// Behavioural model of the ECP5 block RAM DP16KD for gate-level simulation of the netlists Yosys'
// synth_ecp5 writes (tests/sim/test_board_uart.py). Yosys' own ECP5 cell library declares DP16KD
// with its parameters but no behaviour, so a netlist simulated with it reads 0 from every block
// RAM. This model covers the block as Yosys' mapping drives it (techlibs/lattice/
// brams_map_16kd.v): both ports synchronous, widths 1, 2, 4, 9, 18 per port and 36 as the
// pseudo-dual-port write (data on DIB:DIA) or read (data on DOB:DOA), byte enables on
// AD[1:0] (x18) and AD[3:0] (x36), WRITEMODE NORMAL / WRITETHROUGH / READBEFOREWRITE, chip-select
// decode, output register (REGMODE OUTREG with OCE), synchronous or asynchronous output reset,
// inverted clocks, and the INITVAL contents (16 words of 18 bits in 20-bit slots per parameter).
//
// The array is 2,048 bytes of 9 bits (the ninth the parity bit of Lattice's data sheet, TN1264):
// a 36-bit word k holds bytes 4k..4k+3, an 18-bit word bytes 2k and 2k+1, a 9-bit word byte k;
// narrower words take data bits 0-7 of a byte only. The address is AD[13:0] in bit units: the
// low log2(width) bits select nothing (byte enables for x18 and x36).
`timescale 1ns / 1ps
module DP16KD (
    input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
    input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
    input CEA, OCEA, CLKA, WEA, RSTA,
    input CSA2, CSA1, CSA0,
    output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
    input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
    input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
    input CEB, OCEB, CLKB, WEB, RSTB,
    input CSB2, CSB1, CSB0,
    output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
    parameter integer DATA_WIDTH_A = 18;
    parameter integer DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    parameter GSR = "ENABLED";
    parameter INIT_DATA = "STATIC";
    parameter WID = 0;
    parameter [319:0] INITVAL_00 = 320'h0;
    parameter [319:0] INITVAL_01 = 320'h0;
    parameter [319:0] INITVAL_02 = 320'h0;
    parameter [319:0] INITVAL_03 = 320'h0;
    parameter [319:0] INITVAL_04 = 320'h0;
    parameter [319:0] INITVAL_05 = 320'h0;
    parameter [319:0] INITVAL_06 = 320'h0;
    parameter [319:0] INITVAL_07 = 320'h0;
    parameter [319:0] INITVAL_08 = 320'h0;
    parameter [319:0] INITVAL_09 = 320'h0;
    parameter [319:0] INITVAL_0A = 320'h0;
    parameter [319:0] INITVAL_0B = 320'h0;
    parameter [319:0] INITVAL_0C = 320'h0;
    parameter [319:0] INITVAL_0D = 320'h0;
    parameter [319:0] INITVAL_0E = 320'h0;
    parameter [319:0] INITVAL_0F = 320'h0;
    parameter [319:0] INITVAL_10 = 320'h0;
    parameter [319:0] INITVAL_11 = 320'h0;
    parameter [319:0] INITVAL_12 = 320'h0;
    parameter [319:0] INITVAL_13 = 320'h0;
    parameter [319:0] INITVAL_14 = 320'h0;
    parameter [319:0] INITVAL_15 = 320'h0;
    parameter [319:0] INITVAL_16 = 320'h0;
    parameter [319:0] INITVAL_17 = 320'h0;
    parameter [319:0] INITVAL_18 = 320'h0;
    parameter [319:0] INITVAL_19 = 320'h0;
    parameter [319:0] INITVAL_1A = 320'h0;
    parameter [319:0] INITVAL_1B = 320'h0;
    parameter [319:0] INITVAL_1C = 320'h0;
    parameter [319:0] INITVAL_1D = 320'h0;
    parameter [319:0] INITVAL_1E = 320'h0;
    parameter [319:0] INITVAL_1F = 320'h0;
    parameter [319:0] INITVAL_20 = 320'h0;
    parameter [319:0] INITVAL_21 = 320'h0;
    parameter [319:0] INITVAL_22 = 320'h0;
    parameter [319:0] INITVAL_23 = 320'h0;
    parameter [319:0] INITVAL_24 = 320'h0;
    parameter [319:0] INITVAL_25 = 320'h0;
    parameter [319:0] INITVAL_26 = 320'h0;
    parameter [319:0] INITVAL_27 = 320'h0;
    parameter [319:0] INITVAL_28 = 320'h0;
    parameter [319:0] INITVAL_29 = 320'h0;
    parameter [319:0] INITVAL_2A = 320'h0;
    parameter [319:0] INITVAL_2B = 320'h0;
    parameter [319:0] INITVAL_2C = 320'h0;
    parameter [319:0] INITVAL_2D = 320'h0;
    parameter [319:0] INITVAL_2E = 320'h0;
    parameter [319:0] INITVAL_2F = 320'h0;
    parameter [319:0] INITVAL_30 = 320'h0;
    parameter [319:0] INITVAL_31 = 320'h0;
    parameter [319:0] INITVAL_32 = 320'h0;
    parameter [319:0] INITVAL_33 = 320'h0;
    parameter [319:0] INITVAL_34 = 320'h0;
    parameter [319:0] INITVAL_35 = 320'h0;
    parameter [319:0] INITVAL_36 = 320'h0;
    parameter [319:0] INITVAL_37 = 320'h0;
    parameter [319:0] INITVAL_38 = 320'h0;
    parameter [319:0] INITVAL_39 = 320'h0;
    parameter [319:0] INITVAL_3A = 320'h0;
    parameter [319:0] INITVAL_3B = 320'h0;
    parameter [319:0] INITVAL_3C = 320'h0;
    parameter [319:0] INITVAL_3D = 320'h0;
    parameter [319:0] INITVAL_3E = 320'h0;
    parameter [319:0] INITVAL_3F = 320'h0;

    wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
    wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
    wire clka = (CLKAMUX == "INV") ? ~CLKA : CLKA;
    wire clkb = (CLKBMUX == "INV") ? ~CLKB : CLKB;

    // "0bXYZ": chip selected when {CS2, CS1, CS0} equals it
    function [2:0] decode(input [8*5-1:0] text);
        decode = {text[16], text[8], text[0]};     // '0' / '1' characters: their low bit
    endfunction
    wire sel_a = ({CSA2, CSA1, CSA0} == decode(CSDECODE_A));
    wire sel_b = ({CSB2, CSB1, CSB0} == decode(CSDECODE_B));

    reg [8:0] mem [0:2047];

    function [319:0] initval(input [5:0] index);
        case (index)
            6'h00: initval = INITVAL_00;
            6'h01: initval = INITVAL_01;
            6'h02: initval = INITVAL_02;
            6'h03: initval = INITVAL_03;
            6'h04: initval = INITVAL_04;
            6'h05: initval = INITVAL_05;
            6'h06: initval = INITVAL_06;
            6'h07: initval = INITVAL_07;
            6'h08: initval = INITVAL_08;
            6'h09: initval = INITVAL_09;
            6'h0A: initval = INITVAL_0A;
            6'h0B: initval = INITVAL_0B;
            6'h0C: initval = INITVAL_0C;
            6'h0D: initval = INITVAL_0D;
            6'h0E: initval = INITVAL_0E;
            6'h0F: initval = INITVAL_0F;
            6'h10: initval = INITVAL_10;
            6'h11: initval = INITVAL_11;
            6'h12: initval = INITVAL_12;
            6'h13: initval = INITVAL_13;
            6'h14: initval = INITVAL_14;
            6'h15: initval = INITVAL_15;
            6'h16: initval = INITVAL_16;
            6'h17: initval = INITVAL_17;
            6'h18: initval = INITVAL_18;
            6'h19: initval = INITVAL_19;
            6'h1A: initval = INITVAL_1A;
            6'h1B: initval = INITVAL_1B;
            6'h1C: initval = INITVAL_1C;
            6'h1D: initval = INITVAL_1D;
            6'h1E: initval = INITVAL_1E;
            6'h1F: initval = INITVAL_1F;
            6'h20: initval = INITVAL_20;
            6'h21: initval = INITVAL_21;
            6'h22: initval = INITVAL_22;
            6'h23: initval = INITVAL_23;
            6'h24: initval = INITVAL_24;
            6'h25: initval = INITVAL_25;
            6'h26: initval = INITVAL_26;
            6'h27: initval = INITVAL_27;
            6'h28: initval = INITVAL_28;
            6'h29: initval = INITVAL_29;
            6'h2A: initval = INITVAL_2A;
            6'h2B: initval = INITVAL_2B;
            6'h2C: initval = INITVAL_2C;
            6'h2D: initval = INITVAL_2D;
            6'h2E: initval = INITVAL_2E;
            6'h2F: initval = INITVAL_2F;
            6'h30: initval = INITVAL_30;
            6'h31: initval = INITVAL_31;
            6'h32: initval = INITVAL_32;
            6'h33: initval = INITVAL_33;
            6'h34: initval = INITVAL_34;
            6'h35: initval = INITVAL_35;
            6'h36: initval = INITVAL_36;
            6'h37: initval = INITVAL_37;
            6'h38: initval = INITVAL_38;
            6'h39: initval = INITVAL_39;
            6'h3A: initval = INITVAL_3A;
            6'h3B: initval = INITVAL_3B;
            6'h3C: initval = INITVAL_3C;
            6'h3D: initval = INITVAL_3D;
            6'h3E: initval = INITVAL_3E;
            6'h3F: initval = INITVAL_3F;
        endcase
    endfunction

    integer i, j;
    reg [319:0] row;
    initial begin
        for (i = 0; i < 64; i = i + 1) begin
            row = initval(i[5:0]);
            for (j = 0; j < 16; j = j + 1) begin
                mem[(i * 16 + j) * 2] = row[j * 20 +: 9];
                mem[(i * 16 + j) * 2 + 1] = row[j * 20 + 9 +: 9];
            end
        end
    end

    // The word of ``width`` bits at bit address ``ad`` (the array as it is now).
    function [35:0] read_word(input integer width, input [13:0] ad);
        integer k;
        begin
            read_word = 36'd0;
            case (width)
                36: begin k = ad[13:5]; read_word = {mem[4*k+3], mem[4*k+2], mem[4*k+1], mem[4*k]}; end
                18: begin k = ad[13:4]; read_word[17:0] = {mem[2*k+1], mem[2*k]}; end
                9:  read_word[8:0] = mem[ad[13:3]];
                4:  read_word[3:0] = mem[ad[13:3]] >> (4 * ad[2]);
                2:  read_word[1:0] = mem[ad[13:3]] >> (2 * ad[2:1]);
                default: read_word[0] = mem[ad[13:3]][ad[2:0]];
            endcase
        end
    endfunction

    // Write ``data`` (``width`` bits) at ``ad``; x18 / x36: byte enables in ad[1:0] / ad[3:0].
    task write_word(input integer width, input [13:0] ad, input [35:0] data);
        integer k, b;
        begin
            case (width)
                36: begin
                    k = ad[13:5];
                    for (b = 0; b < 4; b = b + 1) if (ad[b]) mem[4*k+b] <= data[9*b +: 9];
                end
                18: begin
                    k = ad[13:4];
                    for (b = 0; b < 2; b = b + 1) if (ad[b]) mem[2*k+b] <= data[9*b +: 9];
                end
                9:  mem[ad[13:3]] <= data[8:0];
                4:  if (ad[2]) mem[ad[13:3]][7:4] <= data[3:0]; else mem[ad[13:3]][3:0] <= data[3:0];
                2:  case (ad[2:1])
                        2'd0: mem[ad[13:3]][1:0] <= data[1:0];
                        2'd1: mem[ad[13:3]][3:2] <= data[1:0];
                        2'd2: mem[ad[13:3]][5:4] <= data[1:0];
                        default: mem[ad[13:3]][7:6] <= data[1:0];
                    endcase
                default: mem[ad[13:3]][ad[2:0]] <= data[0];
            endcase
        end
    endtask

    // The written word as a read in the same cycle returns it (WRITETHROUGH): the new bytes
    // where enabled, the old ones elsewhere.
    function [35:0] merged(input integer width, input [13:0] ad, input [35:0] data);
        integer b;
        begin
            merged = data;
            if (width == 36 || width == 18)
                for (b = 0; b < width / 9; b = b + 1)
                    if (!ad[b]) merged[9*b +: 9] = read_word(width, ad) >> (9 * b);
        end
    endfunction

    // Port A writes DIB:DIA when it is 36 bits wide (and then reads nothing: port B reads).
    wire [35:0] data_a = (DATA_WIDTH_A == 36) ? {dib, dia} : {18'd0, dia};
    wire [35:0] data_b = {18'd0, dib};
    reg [35:0] latch_a, latch_b, out_a, out_b;
    initial begin latch_a = 0; latch_b = 0; out_a = 0; out_b = 0; end

    // One clock edge of a port: the write, and the read into its output latch. A synchronous
    // reset clears the latch and blocks the write.
    `define BSNN_DP16KD_EDGE(CE, SEL, WE, RST, WIDTH, AD, DATA, MODE, LATCH, READS) \
        if (RST) LATCH <= 0; \
        else if (CE && SEL) begin \
            if (WE) begin \
                write_word(WIDTH, AD, DATA); \
                if (MODE == "WRITETHROUGH") LATCH <= merged(WIDTH, AD, DATA); \
                else if (MODE == "READBEFOREWRITE") LATCH <= read_word(WIDTH, AD); \
            end else if (READS) LATCH <= read_word(WIDTH, AD); \
        end

    generate
        if (RESETMODE == "ASYNC") begin : asynchronous_reset
            always @(posedge clka or posedge RSTA)
                `BSNN_DP16KD_EDGE(CEA, sel_a, WEA, RSTA, DATA_WIDTH_A, ada, data_a, WRITEMODE_A, latch_a, DATA_WIDTH_A != 36)
            always @(posedge clkb or posedge RSTB)
                `BSNN_DP16KD_EDGE(CEB, sel_b, WEB, RSTB, DATA_WIDTH_B, adb, data_b, WRITEMODE_B, latch_b, 1'b1)
            always @(posedge clka or posedge RSTA) if (RSTA) out_a <= 0; else if (OCEA) out_a <= latch_a;
            always @(posedge clkb or posedge RSTB) if (RSTB) out_b <= 0; else if (OCEB) out_b <= latch_b;
        end else begin : synchronous_reset
            always @(posedge clka)
                `BSNN_DP16KD_EDGE(CEA, sel_a, WEA, RSTA, DATA_WIDTH_A, ada, data_a, WRITEMODE_A, latch_a, DATA_WIDTH_A != 36)
            always @(posedge clkb)
                `BSNN_DP16KD_EDGE(CEB, sel_b, WEB, RSTB, DATA_WIDTH_B, adb, data_b, WRITEMODE_B, latch_b, 1'b1)
            always @(posedge clka) if (RSTA) out_a <= 0; else if (OCEA) out_a <= latch_a;
            always @(posedge clkb) if (RSTB) out_b <= 0; else if (OCEB) out_b <= latch_b;
        end
    endgenerate
    `undef BSNN_DP16KD_EDGE

    // REGMODE OUTREG: the second register (enabled by OCE) drives the outputs.
    wire [35:0] port_a = (REGMODE_A == "OUTREG") ? out_a : latch_a;
    wire [35:0] port_b = (REGMODE_B == "OUTREG") ? out_b : latch_b;
    // A 36-bit read (port B) drives both output buses.
    wire [17:0] doa = (DATA_WIDTH_B == 36) ? port_b[17:0] : port_a[17:0];
    wire [17:0] dob = (DATA_WIDTH_B == 36) ? port_b[35:18] : port_b[17:0];
    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
endmodule
