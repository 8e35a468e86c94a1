/* Input encoding of a bsnn model header in plain C99: the rules of docs/semantics.md section 9
 * with the parameters the generated header defines (BSNN_ENCODING, BSNN_ENCODING_*), for firmware
 * that turns its own pixels or sensor events into input events. Include the model header first.
 *
 * Images (rate, threshold, latency): bsnn_pixel_events(x, t) is the number of events (0 or 1)
 * that a pixel of value x sends at step t, with polarity 1 and the pixel's row-major position as
 * index. poisson draws from PyTorch's random generator and has no C equivalent here.
 * Events: an event (x, y, polarity, ts_us >= 0) goes to input bsnn_event_index(x, y) at step
 * bsnn_event_step(ts_us), or nowhere when that is -1 (late, with late_events = drop); when
 * BSNN_ENCODING_MAX_PER_PIXEL is not 0, the count of each (index, polarity, step) is capped at it.
 * tests/test_firmware.py checks these functions against the Python encoder. */
#ifndef BSNN_ENCODE_H
#define BSNN_ENCODE_H

#include <stdint.h>

#if BSNN_ENCODING == BSNN_ENCODING_KIND_RATE
static inline int bsnn_pixel_events(uint8_t x, int t) {
    int64_t T = BSNN_TIME_STEPS, q = (2 * (int64_t)x * T + 255) / 510;   /* round(x T / 255) */
    return (int)(((t + 1) * q) / T - (t * q) / T);
}
#elif BSNN_ENCODING == BSNN_ENCODING_KIND_THRESHOLD
static inline int bsnn_pixel_events(uint8_t x, int t) {
    int value = x;   /* an int, so that no compiler calls a threshold of 0 or 1 always true */
    (void)t;
    return value >= BSNN_ENCODING_THRESHOLD;
}
#elif BSNN_ENCODING == BSNN_ENCODING_KIND_LATENCY
static inline int bsnn_pixel_events(uint8_t x, int t) {
    int value = x;   /* an int, so that no compiler calls min_value 0 always true */
    return value >= BSNN_ENCODING_MIN_VALUE && t == (int)(((255 - (int64_t)value) * BSNN_TIME_STEPS) / 256);
}
#elif BSNN_ENCODING == BSNN_ENCODING_KIND_EVENTS
static inline int32_t bsnn_event_index(int x, int y) {
    return (int32_t)y * BSNN_ENCODING_WIDTH + x;
}
static inline int bsnn_event_step(int64_t ts_us) {
    int64_t step = ts_us * BSNN_TIME_STEPS / (int64_t)BSNN_ENCODING_WINDOW_US;
    if (step < BSNN_TIME_STEPS) return (int)step;
    return BSNN_ENCODING_LATE_EVENTS == BSNN_ENCODING_LATE_EVENTS_DROP ? -1 : BSNN_TIME_STEPS - 1;
}
#endif

#endif /* BSNN_ENCODE_H */
