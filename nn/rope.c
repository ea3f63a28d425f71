/*
 * rope.c - host computation of the RoPE sin/cos tables (see rope.h).
 */
#include "nn/rope.h"

#include <math.h>

void rope_tables(float *sin_table, float *cos_table, int Hp, int Wp, int Dh,
                 double base, double rescale) {
    const int quarter = Dh / 4;
    for (int py = 0; py < Hp; py++) {
        for (int px = 0; px < Wp; px++) {
            const double coord[2] = {
                (2.0 * (py + 0.5) / Hp - 1.0) * rescale,
                (2.0 * (px + 0.5) / Wp - 1.0) * rescale,
            };
            float *s = sin_table + (long)(py * Wp + px) * Dh;
            float *c = cos_table + (long)(py * Wp + px) * Dh;
            for (int axis = 0; axis < 2; axis++) {
                for (int i = 0; i < quarter; i++) {
                    double period = pow(base, 2.0 * i / (Dh / 2));
                    double angle = 2.0 * M_PI * coord[axis] / period;
                    int j = axis * quarter + i;
                    s[j] = s[j + Dh / 2] = (float)sin(angle);
                    c[j] = c[j + Dh / 2] = (float)cos(angle);
                }
            }
        }
    }
}
