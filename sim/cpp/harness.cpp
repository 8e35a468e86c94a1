// Compiled Verilator harness for bsnn_core: streams a whole dataset through the RTL at full speed.
//
// Usage: Vharness INPUT OUTPUT [max_cycles_per_sample]
// INPUT  (little-endian uint32): "BSNI", n_samples, then per sample: n_records, records.
//        A record: bit 31 end_of_step, bit 30 polarity, bits 29..0 neuron index.
// OUTPUT (little-endian): "BSNO", n_samples, then per sample:
//        uint32 n_records, uint32 timeout, uint32 error, uint64 cycles,
//        n_records x int32[5] (kind, step, layer, index, value).
// Field offsets and widths of the payloads come from layout.h, generated from hdl/layouts.py.
// Verilator escapes the double underscore of Amaranth's port names ("i_events__valid") as ___05F.
#include "Vbsnn_core.h"
#include "verilated.h"
#include "layout.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

template <typename T>
static inline uint64_t get_field(const T& sig, int off, int width) {
    uint64_t v = static_cast<uint64_t>(sig) >> off;
    return width >= 64 ? v : (v & ((uint64_t(1) << width) - 1));
}
template <std::size_t N>
static inline uint64_t get_field(const VlWide<N>& sig, int off, int width) {
    uint64_t r = 0;
    for (int i = 0; i < width; i++) {
        int b = off + i;
        r |= uint64_t((sig[b / 32] >> (b % 32)) & 1u) << i;
    }
    return r;
}
template <typename T>
static inline void set_field(T& sig, int off, int width, uint64_t value) {
    uint64_t mask = (width >= 64 ? ~uint64_t(0) : ((uint64_t(1) << width) - 1)) << off;
    sig = static_cast<T>((static_cast<uint64_t>(sig) & ~mask) | ((value << off) & mask));
}
template <std::size_t N>
static inline void set_field(VlWide<N>& sig, int off, int width, uint64_t value) {
    for (int i = 0; i < width; i++) {
        int b = off + i;
        uint32_t bit = uint32_t((value >> i) & 1u);
        sig[b / 32] = (sig[b / 32] & ~(1u << (b % 32))) | (bit << (b % 32));
    }
}
static inline int64_t sign_extend(uint64_t v, int width) {
    if (width < 64 && (v >> (width - 1)) & 1) v |= ~uint64_t(0) << width;
    return static_cast<int64_t>(v);
}

static bool read_u32(FILE* f, uint32_t* v) { return fread(v, 4, 1, f) == 1; }

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s INPUT OUTPUT [max_cycles_per_sample]\n", argv[0]);
        return 2;
    }
    uint64_t max_cycles = argc > 3 ? strtoull(argv[3], nullptr, 10) : 100000000ull;
    FILE* in = fopen(argv[1], "rb");
    if (!in) { fprintf(stderr, "harness: cannot open %s\n", argv[1]); return 2; }
    uint32_t magic = 0, n_samples = 0;
    if (!read_u32(in, &magic) || magic != 0x494e5342u || !read_u32(in, &n_samples)) {
        fprintf(stderr, "harness: %s: not a BSNI input file\n", argv[1]);
        return 2;
    }
    FILE* out = fopen(argv[2], "wb");
    if (!out) { fprintf(stderr, "harness: cannot write %s\n", argv[2]); return 2; }
    uint32_t out_magic = 0x4f4e5342u;
    fwrite(&out_magic, 4, 1, out);
    fwrite(&n_samples, 4, 1, out);

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Vbsnn_core>(ctx.get());
    uint64_t total_cycles = 0;
    auto edge = [&]() { top->clk = 1; top->eval(); top->clk = 0; top->eval(); total_cycles++; };

    top->clk = 0; top->rst = 1; top->start = 0;
    top->i_events___05Fvalid = 0; top->i_config___05Fvalid = 0; top->o_results___05Fready = 1;
    top->eval();
    for (int i = 0; i < 3; i++) edge();
    top->rst = 0; top->eval();
    edge();

    std::vector<uint32_t> events;
    std::vector<int32_t> records;
    for (uint32_t s = 0; s < n_samples; s++) {
        uint32_t n = 0;
        if (!read_u32(in, &n)) { fprintf(stderr, "harness: truncated input at sample %u\n", s); return 2; }
        events.resize(n);
        if (n && fread(events.data(), 4, n, in) != n) { fprintf(stderr, "harness: truncated sample %u\n", s); return 2; }
        records.clear();
        top->start = 1; top->eval();
        edge();
        top->start = 0;
        size_t next = 0;
        bool got_class = false, timeout = false;
        uint64_t waited = 0;
        while (true) {
            // Drive inputs for this cycle, settle, sample the handshakes, then the rising edge.
            top->i_events___05Fvalid = next < events.size();
            if (next < events.size()) {
                uint32_t e = events[next];
                set_field(top->i_events___05Fpayload, EV_INDEX_OFF, EV_INDEX_W, e & 0x3fffffffu);
                set_field(top->i_events___05Fpayload, EV_POLARITY_OFF, 1, (e >> 30) & 1u);
                set_field(top->i_events___05Fpayload, EV_EOS_OFF, 1, (e >> 31) & 1u);
            }
            top->o_results___05Fready = !got_class;
            top->eval();
            bool in_fire = top->i_events___05Fvalid && top->i_events___05Fready;
            if (top->o_results___05Fvalid && top->o_results___05Fready) {
                uint64_t kind = get_field(top->o_results___05Fpayload, RES_KIND_OFF, RES_KIND_W);
                records.push_back(int32_t(kind));
                records.push_back(int32_t(get_field(top->o_results___05Fpayload, RES_STEP_OFF, RES_STEP_W)));
                records.push_back(int32_t(get_field(top->o_results___05Fpayload, RES_LAYER_OFF, RES_LAYER_W)));
                records.push_back(int32_t(get_field(top->o_results___05Fpayload, RES_INDEX_OFF, RES_INDEX_W)));
                records.push_back(int32_t(sign_extend(get_field(top->o_results___05Fpayload, RES_VALUE_OFF, RES_VALUE_W), RES_VALUE_W)));
                if (kind == RESULT_CLASS) got_class = true;
            }
            edge();
            if (in_fire) next++;
            if (got_class && !top->busy) break;
            if (++waited > max_cycles) { timeout = true; break; }
        }
        top->i_events___05Fvalid = 0;
        uint32_t n_rec = uint32_t(records.size() / 5), to = timeout ? 1u : 0u;
        uint32_t err = uint32_t(top->error);
        uint64_t cyc = uint64_t(top->cycles);
        fwrite(&n_rec, 4, 1, out);
        fwrite(&to, 4, 1, out);
        fwrite(&err, 4, 1, out);
        fwrite(&cyc, 8, 1, out);
        if (n_rec) fwrite(records.data(), 4, records.size(), out);
        if (timeout) {   // the core is stuck: reset it before the next sample
            top->rst = 1; edge(); edge(); top->rst = 0; top->eval();
        }
    }
    fclose(out);
    fclose(in);
    top->final();
    fprintf(stderr, "harness: %u samples, %llu clock cycles simulated\n", n_samples,
            (unsigned long long)total_cycles);
    return 0;
}
