// Behavioural SPI configuration flash (W25Q128JV) for the board-top simulations: the same
// commands and timing checks as SPIFlashModel in sim/spi_flash.py, which documents the
// behaviour and owns the datasheet constants (passed in as parameters by
// sim/spi_flash.py:flash_model_parameters). In Verilog so that a boot, which clocks every byte of
// the model image twice, runs at the simulator's speed instead of one Python callback per SCK edge.
//
// Run-time plusargs: +bsnn_flash_image=<file> ($readmemh bytes) placed at flash address
// +bsnn_flash_base=<n> (WINDOW bytes from there are modelled;
// the rest of the array reads 0xFF) and +bsnn_flash_log=<file>, where every command, violation
// and deselect is written as a line (read back by sim/spi_flash.py:read_flash_log).
`timescale 1ns / 1ps
module bsnn_spi_flash_model #(
    // Every instance sets these (sim/spi_flash.py:flash_model_parameters, the one source).
    parameter integer WINDOW = 1,        // bytes modelled from the +bsnn_flash_base address
    parameter integer SIZE = 1,          // bytes of the whole array (addresses wrap here)
    parameter real T_READ_NS = 0.0,      // shortest SCK period of Read Data (1 / fR)
    parameter real T_FAST_NS = 0.0,      // shortest SCK period of the other commands
    parameter real T_RES1_NS = 0.0,
    parameter real T_SHSL_NS = 0.0,
    parameter real T_SLCH_NS = 0.0,
    parameter real T_CLH_NS = 0.0
) (
    input  wire cs_n,
    input  wire sck,
    input  wire copi,
    output reg  cipo
);
    reg [7:0] mem [0:WINDOW-1];
    reg [8*1024-1:0] path;
    integer log, i, base;

    reg selected, powered_down, awake_known, last_sck, have_rise, ignore, have_opcode;
    real awake_at, t_cs_rise, t_cs_fall, t_sck, t_rise, now;
    integer bits, out_bits, bytes_read;
    reg [31:0] shift;
    reg [7:0] opcode, out;
    reg [31:0] address;

    initial begin
        for (i = 0; i < WINDOW; i = i + 1) mem[i] = 8'hFF;
        if ($value$plusargs("bsnn_flash_image=%s", path)) $readmemh(path, mem);
        base = 0;
        if (!$value$plusargs("bsnn_flash_base=%d", base)) base = 0;
        log = 0;
        if ($value$plusargs("bsnn_flash_log=%s", path)) log = $fopen(path, "w");
        selected = 0; powered_down = 1; awake_known = 0; last_sck = 0; have_rise = 0;
        t_cs_rise = -1.0e18; t_cs_fall = -1.0e18; t_sck = -1.0e18; t_rise = 0.0; awake_at = 0.0;
        bytes_read = 0;
        reset_command;
    end

    task reset_command;
        begin
            bits = 0; shift = 0; have_opcode = 0; opcode = 0; address = 0;
            out = 8'hFF; out_bits = 0; ignore = 0; cipo = 1;
        end
    endtask

    task violation(input [8*96-1:0] text);
        begin
            if (log) begin
                $fdisplay(log, "violation %0.0f %0s", now, text);
                $fflush(log);
            end
        end
    endtask

    task command(input [7:0] op, input has_address, input [31:0] addr);
        begin
            if (log) begin
                if (has_address) $fdisplay(log, "address %0.0f %0d %0d", now, op, addr);
                else $fdisplay(log, "command %0.0f %0d", now, op);
                $fflush(log);
            end
        end
    endtask

    function [7:0] byte_at(input [31:0] addr);
        reg [31:0] a;
        begin
            a = addr % SIZE;
            if (a >= base && a - base < WINDOW) byte_at = mem[a - base];
            else byte_at = 8'hFF;
        end
    endfunction

    always @(cs_n) begin
        now = $realtime;
        if (cs_n === 1'b0 && !selected) begin
            if (now - t_cs_rise < T_SHSL_NS) violation("CS# high shorter than tSHSL");
            selected = 1;
            t_cs_fall = now;
            reset_command;
        end else if (cs_n === 1'b1 && selected) begin
            selected = 0;
            t_cs_rise = now;
            if (have_opcode && opcode == 8'hAB && bits == 8) begin
                if (powered_down) begin
                    awake_at = now + T_RES1_NS;
                    awake_known = 1;
                end
                powered_down = 0;
            end else if (have_opcode && opcode == 8'hB9 && bits == 8) begin
                powered_down = 1;
                awake_known = 0;
            end
            cipo = 1;
            if (log) begin
                $fdisplay(log, "deselect %0.0f %0d", now, bytes_read);
                $fflush(log);
            end
        end
    end

    always @(sck) begin
        now = $realtime;
        if ((sck === 1'b0 || sck === 1'b1) && sck !== last_sck) begin
            if (selected && now - t_sck < T_CLH_NS) violation("SCK high or low shorter than tCLH");
            last_sck = sck;
            t_sck = now;
            if (selected) begin
                if (sck) rise;
                else fall;
            end
        end
    end

    task rise;
        reg asleep;
        begin
            if (have_rise && bits != 0
                && now - t_rise < (have_opcode && opcode == 8'h03 ? T_READ_NS : T_FAST_NS) - 1.0e-6)
                violation("SCK period above the flash's limit");
            if (bits == 0 && now - t_cs_fall < T_SLCH_NS)
                violation("SCK rises less than tSLCH after CS# falls");
            t_rise = now;
            have_rise = 1;
            shift = {shift[30:0], copi === 1'b1};
            bits = bits + 1;
            if (bits == 8) begin
                asleep = powered_down || (awake_known && now < awake_at);
                if (asleep && shift[7:0] != 8'hAB) begin
                    if (!powered_down) violation("command before tRES1 has passed");
                    ignore = 1;
                end
                opcode = shift[7:0];
                have_opcode = 1;
                command(opcode, 0, 0);
            end else if (bits == 32 && opcode == 8'h03 && !ignore) begin
                address = shift[23:0];
                command(opcode, 1, address);
            end else if (bits > 32 && bits % 8 == 0 && opcode == 8'h03 && !ignore) begin
                bytes_read = bytes_read + 1;     // the 8th clock of a data byte
            end
        end
    endtask

    // Shift the next data bit out (after the 32nd clock of a read).
    task fall;
        begin
            if (!ignore && have_opcode && opcode == 8'h03 && bits >= 32) begin
                if (out_bits == 0) begin
                    out = byte_at(address);
                    address = address + 1;
                    out_bits = 8;
                end
                out_bits = out_bits - 1;
                cipo = out[out_bits];
            end
        end
    endtask
endmodule
