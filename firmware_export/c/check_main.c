/* Test driver: reads "n" then n lines "step index polarity" from stdin, prints every spike as
 * "S step layer neuron", the output potentials as "V v0 v1 ..." and "C class". */
#include <stdio.h>
#include <stdlib.h>
#include "model.h"
#include "bsnn_infer.h"

static void print_spike(void *ctx, int step, int layer, int neuron) {
    (void)ctx;
    printf("S %d %d %d\n", step, layer, neuron);
}

int main(void) {
    size_t n;
    while (scanf("%zu", &n) == 1) {
        int32_t *ev = malloc(sizeof(int32_t) * 3 * (n ? n : 1));
        for (size_t i = 0; i < 3 * n; i++) if (scanf("%d", &ev[i]) != 1) return 2;
        int64_t v[BSNN_OUTPUT_SIZE];
        int cls = bsnn_infer(ev, n, print_spike, NULL, v);
        printf("V");
        for (int j = 0; j < BSNN_OUTPUT_SIZE; j++) printf(" %lld", (long long)v[j]);
        printf("\nC %d\n", cls);
        free(ev);
    }
    return 0;
}
