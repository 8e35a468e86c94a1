/* Test driver of bsnn_encode.h: for an image encoding prints "x t n" for every pixel value x and
 * step t (n events); for the events encoding reads timestamps (us) from stdin and prints the step
 * of each (-1: dropped) and then "I" with the index of (x, y) = (1, 2). */
#include <stdio.h>
#include "model.h"
#include "bsnn_encode.h"

int main(void) {
#if BSNN_ENCODING == BSNN_ENCODING_KIND_EVENTS
    long long ts;
    while (scanf("%lld", &ts) == 1) printf("%d\n", bsnn_event_step((int64_t)ts));
    printf("I %ld\n", (long)bsnn_event_index(1, 2));
#elif BSNN_ENCODING != BSNN_ENCODING_KIND_POISSON
    for (int x = 0; x < 256; x++)
        for (int t = 0; t < BSNN_TIME_STEPS; t++) printf("%d %d %d\n", x, t, bsnn_pixel_events((uint8_t)x, t));
#endif
    return 0;
}
