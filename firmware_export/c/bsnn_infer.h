/* Reference inference of a bsnn model header in plain C99 (docs/semantics.md), for firmware on a
 * host microcontroller and as a third, independent implementation checked against the golden
 * model by tests/test_firmware.py. Include the generated model header first.
 *
 *   int bsnn_infer(const int32_t *events, size_t n, bsnn_spike_fn on_spike, void *ctx,
 *                  int64_t *v_out);
 * events: n triplets (step, index, polarity) in non-decreasing step order; on_spike (may be
 * NULL) is called for every spike as (ctx, step, layer 1..L, neuron); v_out (may be NULL)
 * receives the final potentials of the output layer. Returns the predicted class, or -1 for
 * an event the semantics does not cover. Not reentrant (static state). */
#ifndef BSNN_INFER_H
#define BSNN_INFER_H

#include <stddef.h>
#include <stdint.h>

typedef void (*bsnn_spike_fn)(void *ctx, int step, int layer, int neuron);

static int64_t bsnn_sat(int64_t x, int width) {
    int64_t hi = ((int64_t)1 << (width - 1)) - 1, lo = -((int64_t)1 << (width - 1));
    return x > hi ? hi : (x < lo ? lo : x);
}

/* Arithmetic shift right == floor division by 2^k, written so that it holds for negatives. */
static int64_t bsnn_leak(int64_t x, int k) {
    if (k == 0) return 0;
    int64_t d = (int64_t)1 << k;
    return x >= 0 ? x / d : -((-x + d - 1) / d);
}

static int64_t bsnn_v[BSNN_NUM_LAYERS][BSNN_MAX_LAYER_SIZE];
static int64_t bsnn_c[BSNN_NUM_LAYERS][BSNN_MAX_LAYER_SIZE];
static uint8_t bsnn_fired[BSNN_NUM_LAYERS][BSNN_MAX_LAYER_SIZE];
static int64_t bsnn_syn[BSNN_MAX_LAYER_SIZE];
static int32_t bsnn_ev_idx[BSNN_MAX_INPUT_EVENTS > BSNN_MAX_LAYER_SIZE ? BSNN_MAX_INPUT_EVENTS : BSNN_MAX_LAYER_SIZE];
static int32_t bsnn_ev_pol[sizeof(bsnn_ev_idx) / sizeof(bsnn_ev_idx[0])];

static int bsnn_infer(const int32_t *events, size_t n, bsnn_spike_fn on_spike, void *ctx, int64_t *v_out) {
    int64_t count[BSNN_OUTPUT_SIZE], first[BSNN_OUTPUT_SIZE];
    size_t next = 0;
    for (int k = 0; k < BSNN_NUM_LAYERS; k++)
        for (int j = 0; j < BSNN_MAX_LAYER_SIZE; j++) bsnn_v[k][j] = bsnn_c[k][j] = bsnn_fired[k][j] = 0;
    for (int j = 0; j < BSNN_OUTPUT_SIZE; j++) { count[j] = 0; first[j] = -1; }
    for (int t = 0; t < BSNN_TIME_STEPS; t++) {
        size_t n_ev = 0;
        while (next < n && events[3 * next] == t) {
            int32_t idx = events[3 * next + 1], pol = events[3 * next + 2];
            if (idx < 0 || idx >= BSNN_INPUT_SIZE || (pol != 0 && pol != 1) || n_ev >= BSNN_MAX_INPUT_EVENTS)
                return -1;
            bsnn_ev_idx[n_ev] = idx; bsnn_ev_pol[n_ev] = pol; n_ev++; next++;
        }
        if (next < n && events[3 * next] < t) return -1;   /* out of order */
        for (int k = 0; k < BSNN_NUM_LAYERS; k++) {
            const bsnn_layer_t *ly = &bsnn_layers[k];
            for (uint32_t j = 0; j < ly->n_out; j++) bsnn_syn[j] = 0;
            for (size_t e = 0; e < n_ev; e++) {
                const uint8_t *row = ly->weights + (size_t)bsnn_ev_idx[e] * ly->row_bytes;
                for (uint32_t j = 0; j < ly->n_out; j++) {
                    int bit = (row[j >> 3] >> (j & 7)) & 1;
                    bsnn_syn[j] += bit == bsnn_ev_pol[e] ? 1 : -1;
                }
            }
            size_t n_spk = 0;
            for (uint32_t j = 0; j < ly->n_out; j++) {
                int64_t drive = bsnn_syn[j];
                if (ly->current) {
                    int64_t c = bsnn_c[k][j];
                    bsnn_c[k][j] = bsnn_sat(c - bsnn_leak(c, ly->leak_c) + bsnn_syn[j], BSNN_C_WIDTH);
                    drive = bsnn_c[k][j];
                }
                int64_t v = bsnn_v[k][j];
                v = bsnn_sat(v - bsnn_leak(v, ly->leak_v) + drive + ly->bias[j], BSNN_V_WIDTH);
                int spike = v >= ly->threshold[j] && !(ly->fire_once && bsnn_fired[k][j]);
                if (spike) {
                    bsnn_fired[k][j] = 1;
                    if (ly->reset == BSNN_RESET_SUBTRACT) v -= ly->threshold[j];
                    else if (ly->reset == BSNN_RESET_ZERO) v = 0;
                    if (k == BSNN_NUM_LAYERS - 1) { if (count[j] == 0) first[j] = t; count[j]++; }
                    if (on_spike) on_spike(ctx, t, k + 1, (int)j);
                    bsnn_ev_idx[n_spk] = (int32_t)j; bsnn_ev_pol[n_spk] = 1; n_spk++;
                }
                bsnn_v[k][j] = v;
            }
            n_ev = n_spk;
        }
    }
    if (next != n) return -1;   /* events beyond the last step */
    int best = 0;
    for (int j = 0; j < BSNN_OUTPUT_SIZE; j++) {
        int64_t *v = bsnn_v[BSNN_NUM_LAYERS - 1];
        if (v_out) v_out[j] = v[j];
        if (j == 0) continue;
        int better;
        if (BSNN_READOUT == BSNN_READOUT_POTENTIAL) {
            better = v[j] > v[best];
        } else if (BSNN_READOUT == BSNN_READOUT_SPIKE_COUNT) {
            better = count[j] > count[best] || (count[j] == count[best] && v[j] > v[best]);
        } else {
            int64_t ej = first[j] < 0 ? 0 : BSNN_TIME_STEPS - first[j];
            int64_t eb = first[best] < 0 ? 0 : BSNN_TIME_STEPS - first[best];
            better = ej > eb || (ej == eb && v[j] > v[best]);
        }
        if (better) best = j;
    }
    return best;
}

#endif /* BSNN_INFER_H */
